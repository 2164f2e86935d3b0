package org.setls.applet;

import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import javacard.security.RandomData;
import javacardx.crypto.Cipher;

/**
 * TLS 1.2 record protection for the negotiated suite (RFC 5246 6.2.3): AES-128-GCM (RFC 5288),
 * AES-128-CCM and CCM_8 (RFC 6655), AES-128-CBC with HMAC-SHA256 (RFC 5246 6.2.3.2). The server
 * writes with the server keys and reads with the client keys. Records are processed in place in
 * RAM (the APDU buffer), whole or in pieces across APDUs (open/take/finish, begin/takePlain/
 * finishProtect): record plaintext never reaches EEPROM.
 *
 * RAM, from the arena: session state Transients.RECORD_KEYS (SECRETS_SIZE: MAC keys and implicit
 * IVs), RECORD_SEQ (SEQ_SIZE) and RECORD_KIND; record scratch Transients.RECORD_SCRATCH (one APDU, or the APDUs of one record in pieces)
 * (SCRATCH_SIZE); plus two transient AES keys: deselecting the applet forgets the session's keys.
 */
final class RecordCipher {
    private static final short MAC_KEY_SIZE = 32;
    private static final short AES_KEY_SIZE = 16;
    private static final short FIXED_IV_SIZE = 4;      // RFC 5288 3: salt
    private static final short EXPLICIT_NONCE_SIZE = 8; // RFC 5288 3: nonce_explicit
    private static final short CBC_IV_SIZE = 16;
    private static final short AEAD_TAG_SIZE = 16;     // GCM and CCM; CCM_8's is 8
    private static final short MAC_SIZE = 32;
    private static final short SEQ_NUM_SIZE = 8;
    private static final short AAD_SIZE = 13;          // seq_num + type + version + length
    /** The bytes that can be CBC padding: the length byte's 255 and itself. */
    private static final short PAD_WINDOW = 256;

    // Secrets of the active session: bytes of the arena from Transients.RECORD_KEYS. The MAC keys
    // (CBC) and the implicit IVs (AEAD) share the first bytes: a suite has one or the other.
    private static final short CLIENT_MAC = Transients.RECORD_KEYS;
    private static final short SERVER_MAC = (short) (CLIENT_MAC + 32);
    private static final short CLIENT_IV = CLIENT_MAC;
    private static final short SERVER_IV = (short) (CLIENT_MAC + 4);
    /** The AES keys, set into the two key objects for each record (the objects serve every session). */
    private static final short CLIENT_KEY = (short) (CLIENT_MAC + 64);
    private static final short SERVER_KEY = (short) (CLIENT_KEY + AES_KEY_SIZE);
    static final short SECRETS_SIZE = 96;
    // Sequence numbers: bytes of the arena from Transients.RECORD_SEQ.
    private static final short READ_SEQ = Transients.RECORD_SEQ;
    private static final short WRITE_SEQ = (short) (READ_SEQ + 8);
    static final short SEQ_SIZE = 16;
    // Scratch: AAD / MAC header, the nonce, the MAC computed over a received record; bytes of the
    // arena from Transients.RECORD_SCRATCH.
    private static final short AAD = Transients.RECORD_SCRATCH;
    private static final short NONCE = (short) (AAD + 16);
    private static final short MAC_OUT = (short) (AAD + 28);      // CBC: the MAC computed; AEAD: the tag received
    private static final short CHAIN = (short) (MAC_OUT + MAC_SIZE); // CBC: the last ciphertext block
    static final short SCRATCH_SIZE = 28 + MAC_SIZE + 16;

    // A record in pieces: shorts of the arena from Transients.RECORD_PIECE (see open()).
    private static final short S_POS = Transients.RECORD_PIECE;     // bytes taken so far
    private static final short S_TOTAL = (short) (S_POS + 1);        // fragment (unprotect) or plaintext (protect) length
    private static final short S_LEN = (short) (S_POS + 2);          // content length (unprotect)
    private static final short S_TYPE = (short) (S_POS + 3);
    private static final short S_BAD = (short) (S_POS + 4);          // CBC: padding or MAC mismatch so far
    private static final short S_PAD = (short) (S_POS + 5);          // CBC: the padding length
    private static final short S_MAC_DONE = (short) (S_POS + 6);     // CBC: the MAC is computed
    private static final short S_DTLS = (short) (S_POS + 7);         // DTLS: the record passed fresh() (CHAIN: its seq_num)
    static final short PIECE_SIZE = 8;

    private static final short KIND_GCM = 1;
    private static final short KIND_CCM = 2;
    private static final short KIND_CCM_8 = 3;
    private static final short KIND_CBC = 4;
    /** The kind of protection in use (0: none): a short of the arena at Transients.RECORD_KIND. */
    private static final short KIND = Transients.RECORD_KIND;
    static final short KIND_SIZE = 1;

    /** The arena's bytes: the secrets, sequence numbers and scratch above. */
    private final byte[] ram;
    private final short[] kind;
    private final short[] ps;
    private final AESKey clientKey;
    private final AESKey serverKey;
    private final AesGcm gcm;
    private final AesCcm ccm;
    private final Cipher cbc;
    private final HmacSha256 hmac;
    private final RandomData random;
    private final OpCounters counters;

    /** Allocated once, at install; the state is the arena's, the two keys transient key objects. */
    RecordCipher(AesGcm gcm, AesCcm ccm, HmacSha256 hmac, RandomData random, OpCounters counters,
                 Transients arena) {
        this.counters = counters;
        this.gcm = gcm;
        this.ccm = ccm;
        this.hmac = hmac;
        this.random = random;
        ram = arena.bytes;
        kind = arena.shorts;
        ps = arena.shorts;
        clientKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT,
                KeyBuilder.LENGTH_AES_128, false);
        serverKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES_TRANSIENT_DESELECT,
                KeyBuilder.LENGTH_AES_128, false);
        cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
    }

    /** The suites with CBC and HMAC-SHA256 records (RFC 5246 6.2.3.2). */
    static boolean isCbc(short suite) {
        return suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
                || suite == Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256;
    }

    /** Size of the key block (RFC 5246 6.3) the suite needs. */
    static short keyBlockSize(short suite) {
        return isCbc(suite)
                ? (short) (2 * MAC_KEY_SIZE + 2 * AES_KEY_SIZE)
                : (short) (2 * AES_KEY_SIZE + 2 * FIXED_IV_SIZE);
    }

    /** DTLS (RFC 6347): the session's records carry epoch and sequence number (DtlsFraming). */
    private boolean dtls() {
        return kind[Transients.DTLS_MODE] != 0;
    }

    /**
     * Takes the keys from the key block and starts both sequence numbers at 0; in DTLS at epoch 1,
     * sequence number 0 (RFC 6347 4.1: seq_num is epoch || sequence_number).
     */
    void start(short suite, byte[] keyBlock, short off) {
        Util.arrayFillNonAtomic(ram, READ_SEQ, SEQ_SIZE, (byte) 0);
        Util.arrayFillNonAtomic(ram, Transients.DTLS_WINDOW, Transients.DTLS_WINDOW_SIZE, (byte) 0);
        if (dtls()) {
            ram[(short) (READ_SEQ + 1)] = 1;
            ram[(short) (WRITE_SEQ + 1)] = 1;
        }
        if (isCbc(suite)) {
            kind[KIND] = KIND_CBC;
            Util.arrayCopyNonAtomic(keyBlock, off, ram, CLIENT_MAC, (short) (2 * MAC_KEY_SIZE));
            off += 2 * MAC_KEY_SIZE;
            Util.arrayCopyNonAtomic(keyBlock, off, ram, CLIENT_KEY, (short) (2 * AES_KEY_SIZE));
            return;
        }
        kind[KIND] = suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ? KIND_GCM
                : suite == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM ? KIND_CCM : KIND_CCM_8; // CCM_8: C0AE, C0A8
        Util.arrayCopyNonAtomic(keyBlock, off, ram, CLIENT_KEY, (short) (2 * AES_KEY_SIZE));
        Util.arrayCopyNonAtomic(keyBlock, (short) (off + 2 * AES_KEY_SIZE), ram, CLIENT_IV,
                (short) (2 * FIXED_IV_SIZE));
    }

    /** Sets the active session's AES keys into the key objects, before its record is processed. */
    private void loadKeys() {
        clientKey.setKey(ram, CLIENT_KEY);
        serverKey.setKey(ram, SERVER_KEY);
    }

    void clear() {
        kind[KIND] = 0;
        clientKey.clearKey();
        serverKey.clearKey();
        Util.arrayFillNonAtomic(ram, CLIENT_MAC, SECRETS_SIZE, (byte) 0);
    }

    /** Bytes between the record header's start and the plaintext. */
    short prefixLength() {
        return (short) ((dtls() ? Tls.DTLS_RECORD_HEADER_SIZE : Tls.RECORD_HEADER_SIZE)
                + (kind[KIND] == KIND_CBC ? CBC_IV_SIZE : EXPLICIT_NONCE_SIZE));
    }

    /** Bytes of a record header of this session: 5, or DTLS's 13. */
    short headerLength() {
        return dtls() ? Tls.DTLS_RECORD_HEADER_SIZE : Tls.RECORD_HEADER_SIZE;
    }

    /**
     * The seq_num of the record to open next (the client's Finished, DtlsFraming): a DTLS record's
     * epoch and sequence number at buf[off]; it enters the replay window once it authenticated.
     */
    void setReadSeq(byte[] buf, short off) {
        Util.arrayCopyNonAtomic(buf, off, ram, CHAIN, SEQ_NUM_SIZE);
        ps[S_DTLS] = 1;
    }

    // ---- DTLS's anti-replay window (RFC 6347 4.1.2.6) ------------------------------------------
    //
    // The highest seq_num that authenticated is READ_SEQ - 1 once one did (RFC 6347 4.1.2.6's
    // right edge; READ_SEQ itself before any), bit i of the window (bit 0: the last byte's lowest)
    // says seq_num (right edge - i) was received. A record is checked before it is decrypted
    // and marked only once it authenticated.

    /**
     * Whether the DTLS record whose header is at hdr[off] may be opened: its epoch is the
     * session's, and its sequence number is new and within the window. If so, its seq_num is set
     * for open() and true is returned; the replay window moves in accept().
     */
    boolean fresh(byte[] hdr, short off) {
        short seq = (short) (off + 3);
        if (compareSeq(hdr, seq, ram, READ_SEQ, (short) 2) != 0) {
            return false; // another epoch (RFC 6347 4.1: discarded)
        }
        // diff = right edge - seq, the right edge being READ_SEQ - 1 (the last accepted).
        byte[] scratch = ram;
        short d = (short) (MAC_OUT);
        short borrow = 1; // READ_SEQ - 1 - seq
        for (short i = 7; i >= 0; i--) {
            short v = (short) ((short) (ram[(short) (READ_SEQ + i)] & 0xFF) - (short) (hdr[(short) (seq + i)] & 0xFF) - borrow);
            borrow = v < 0 ? (short) 1 : (short) 0;
            scratch[(short) (d + i)] = (byte) v;
        }
        if (borrow != 0) {
            setReadSeqPending(hdr, seq);
            return true; // beyond the right edge: new
        }
        for (short i = 0; i < 7; i++) {
            if (scratch[(short) (d + i)] != 0) {
                return false; // left of the window
            }
        }
        short back = (short) (scratch[(short) (d + 7)] & 0xFF);
        if (back >= 64) {
            return false;
        }
        if (noWindowYet()) {
            // Nothing authenticated yet in this epoch: READ_SEQ is the first expected, not an edge.
            setReadSeqPending(hdr, seq);
            return true;
        }
        short bit = (short) (Transients.DTLS_WINDOW + 7 - (short) (back >> 3));
        if ((ram[bit] & (byte) (1 << (back & 7))) != 0) {
            return false; // a replay
        }
        setReadSeqPending(hdr, seq);
        return true;
    }

    /**
     * Sign of a - b over len big-endian bytes: sequence numbers, public (the secrets are compared
     * without an early exit elsewhere; this is not one of them).
     */
    private static short compareSeq(byte[] a, short aOff, byte[] b, short bOff, short len) {
        for (short i = 0; i < len; i++) {
            short x = (short) (a[(short) (aOff + i)] & 0xFF);
            short y = (short) (b[(short) (bOff + i)] & 0xFF);
            if (x != y) {
                return x < y ? (short) -1 : (short) 1;
            }
        }
        return 0;
    }

    private boolean noWindowYet() {
        for (short i = 0; i < WINDOW_BYTES; i++) {
            if (ram[(short) (Transients.DTLS_WINDOW + i)] != 0) {
                return false;
            }
        }
        return true;
    }

    private static final short WINDOW_BYTES = 8;

    /** The record's seq_num goes to the AAD (NONCE's scratch holds it until accept()). */
    private void setReadSeqPending(byte[] hdr, short seq) {
        Util.arrayCopyNonAtomic(hdr, seq, ram, CHAIN, SEQ_NUM_SIZE);
    }

    /**
     * Marks the record opened since fresh() as received: beyond the right edge the window moves
     * (READ_SEQ becomes its seq_num + 1), else its bit is set.
     */
    private void accept() {
        short edgeMoved = compareSeq(ram, CHAIN, ram, READ_SEQ, SEQ_NUM_SIZE);
        boolean empty = noWindowYet();
        if (edgeMoved >= 0 || empty) {
            // shift = seq - (READ_SEQ - 1) = seq + 1 - READ_SEQ; at most 64 counts
            short shift = 64;
            if (!empty) {
                short borrow = 0;
                boolean big = false;
                short low = 0;
                for (short i = 7; i >= 0; i--) {
                    short v = (short) ((short) (ram[(short) (CHAIN + i)] & 0xFF) - (short) (ram[(short) (READ_SEQ + i)] & 0xFF) - borrow);
                    borrow = v < 0 ? (short) 1 : (short) 0;
                    if (i == 7) {
                        low = (short) (v & 0xFF);
                    } else if ((byte) v != 0) {
                        big = true;
                    }
                }
                shift = big || low >= 63 ? (short) 64 : (short) (low + 1);
            }
            for (short n = 0; n < shift; n++) {
                shiftWindow();
            }
            ram[(short) (Transients.DTLS_WINDOW + 7)] |= 1;
            Util.arrayCopyNonAtomic(ram, CHAIN, ram, READ_SEQ, SEQ_NUM_SIZE);
            increment(READ_SEQ);
            return;
        }
        // within the window: back = READ_SEQ - 1 - seq (< 64, checked by fresh())
        short borrow = 1;
        short back = 0;
        for (short i = 7; i >= 0; i--) {
            short v = (short) ((short) (ram[(short) (READ_SEQ + i)] & 0xFF) - (short) (ram[(short) (CHAIN + i)] & 0xFF) - borrow);
            borrow = v < 0 ? (short) 1 : (short) 0;
            if (i == 7) {
                back = (short) (v & 0xFF);
            }
        }
        short bit = (short) (Transients.DTLS_WINDOW + 7 - (short) (back >> 3));
        ram[bit] |= (byte) (1 << (back & 7));
    }

    private void shiftWindow() {
        short carry = 0;
        for (short i = (short) (Transients.DTLS_WINDOW + 7); i >= Transients.DTLS_WINDOW; i--) {
            short v = (short) (ram[i] & 0xFF);
            ram[i] = (byte) ((short) (v << 1) | carry);
            carry = (short) (v >> 7);
        }
    }

    private short tagLength() {
        return kind[KIND] == KIND_CCM_8 ? (short) 8 : AEAD_TAG_SIZE;
    }

    // ---- a record in pieces ----------------------------------------------------------------
    //
    // Every record goes through open/take/finish (unprotect) or begin/take/finish (protect), in
    // place in a RAM buffer (the APDU buffer): a record one APDU carries is the special case of
    // one piece. The state between pieces is the arena's record scratch (RECORD_SCRATCH, the
    // AEAD or HMAC state) and PIECE shorts; the pieces of one record come in a row, and any other
    // command abandons them (RecordCommands), so nothing else touches that scratch meanwhile.
    // Release-then-confirm (docs/apdu.md): a piece's plaintext is released before the record is
    // known to authenticate; only finish says whether it does.

    /**
     * Starts unprotecting a record: {@code hdr} its 5-byte header (type, version and length
     * already checked by the caller), {@code tail} its last min(32, fragment) bytes. CBC
     * decrypts the last block from the tail to learn the padding length first (tail first: the
     * MAC covers the plaintext only, and where it ends is known only from the padding); AEAD
     * suites ignore the tail. Returns the content length the record claims, or -1 if its length
     * cannot be a record of the suite (public: bad_record_mac).
     */
    short open(byte[] hdr, short hOff, byte[] tail, short tOff) {
        if (!dtls()) {
            ps[S_DTLS] = 0; // the piece state is the arena's, shared by the sessions
        }
        return open(hdr[hOff], Util.getShort(hdr, (short) (hOff + 3)), tail, tOff);
    }

    /**
     * open() of a DTLS record (card mode): its 13-byte header at hdr[hOff]. -3 if the record is
     * of another epoch or a replay (RFC 6347 4.1.2.6: discarded, the session goes on).
     */
    short openDtls(byte[] hdr, short hOff, byte[] tail, short tOff) {
        if (!fresh(hdr, hOff)) {
            return -3;
        }
        ps[S_DTLS] = 1;
        return open(hdr[hOff], Util.getShort(hdr, (short) (hOff + 11)), tail, tOff);
    }

    private short open(byte type, short fragment, byte[] tail, short tOff) {
        loadKeys();
        ps[S_POS] = 0;
        ps[S_TOTAL] = fragment;
        ps[S_TYPE] = type;
        ps[S_BAD] = 0;
        ps[S_MAC_DONE] = 0;
        if (kind[KIND] != KIND_CBC) {
            short len = (short) (fragment - EXPLICIT_NONCE_SIZE - tagLength());
            ps[S_LEN] = len;
            return len < 0 ? (short) -1 : len;
        }
        short n = (short) (fragment - CBC_IV_SIZE);
        if (n < (short) (MAC_SIZE + 16) || (short) (n % 16) != 0) {
            return -1; // the length is public: no secret is involved yet
        }
        // The last block, with the one before it as its IV: its last byte is the padding length.
        cbc.init(clientKey, Cipher.MODE_DECRYPT, tail, tOff, CBC_IV_SIZE);
        cbc.doFinal(tail, (short) (tOff + CBC_IV_SIZE), CBC_IV_SIZE, ram, MAC_OUT);
        counters.count(OpCounters.AES_BLOCKS, (short) 1);
        short padLength = (short) (ram[(short) (MAC_OUT + 15)] & 0xFF);
        Util.arrayFillNonAtomic(ram, MAC_OUT, MAC_SIZE, (byte) 0);
        // tooLong: all ones if padLength + 1 + MAC_SIZE > n, else 0 (n - MAC_SIZE - 1 >= 15). The
        // record is then bad and its MAC is taken over the longest plaintext (no padding).
        short tooLong = (short) ((short) (n - MAC_SIZE - 1 - padLength) >> 15);
        ps[S_BAD] = (short) (tooLong & 1);
        padLength = (short) (padLength & (short) ~tooLong);
        ps[S_PAD] = padLength;
        short len = (short) (n - padLength - 1 - MAC_SIZE);
        ps[S_LEN] = len;
        setAad(READ_SEQ, type, len);
        hmac.init(ram, CLIENT_MAC, MAC_KEY_SIZE);
        hmac.update(ram, AAD, AAD_SIZE);
        return len;
    }

    /**
     * The record's next {@code len} fragment bytes, at buf[off] (RAM), decrypted in place; the
     * content bytes among them (not the explicit nonce or IV, the tag, MAC or padding) are moved
     * to buf[off] and their number returned. -1: more bytes than the header announced, or (CBC) a
     * piece that does not end on a block boundary; the record is then abandoned.
     */
    short take(byte[] buf, short off, short len) {
        short pos = ps[S_POS];
        if (len < 0 || (short) (ps[S_TOTAL] - pos) < len) {
            return -1;
        }
        loadKeys();
        if (kind[KIND] == KIND_CBC) {
            return takeCbc(buf, off, len, pos);
        }
        short i = off;
        short end = (short) (off + len);
        if (pos < EXPLICIT_NONCE_SIZE) {
            short n = (short) (EXPLICIT_NONCE_SIZE - pos);
            if (n > len) {
                n = len;
            }
            Util.arrayCopyNonAtomic(buf, i, ram, (short) (NONCE + FIXED_IV_SIZE + pos), n);
            i += n;
            pos += n;
            if (pos == EXPLICIT_NONCE_SIZE) {
                beginAead(false, ps[S_LEN], (byte) ps[S_TYPE]);
            }
        } else {
            resumeAead(clientKey);
        }
        short textEnd = (short) (EXPLICIT_NONCE_SIZE + ps[S_LEN]);
        short text = 0;
        if (pos < textEnd && i < end) {
            text = (short) (textEnd - pos);
            if (text > (short) (end - i)) {
                text = (short) (end - i);
            }
            if (kind[KIND] == KIND_GCM) {
                gcm.update(buf, i, text, buf, i);
            } else {
                ccm.update(buf, i, text, buf, i);
            }
            Util.arrayCopyNonAtomic(buf, i, buf, off, text);
            i += text;
            pos += text;
        }
        if (i < end) { // the tag, kept for finish()
            Util.arrayCopyNonAtomic(buf, i, ram, (short) (MAC_OUT + pos - textEnd), (short) (end - i));
            pos += (short) (end - i);
        }
        ps[S_POS] = pos;
        return text;
    }

    /**
     * CBC: the IV, then whole blocks, decrypted with the last ciphertext block carried over.
     * RFC 5246 6.2.3.2 with the Lucky Thirteen countermeasure (AlFardan and Paterson, 2013): the
     * padding length came from the tail (open()); a padding length too long for the record makes
     * it bad and the MAC is taken over the longest plaintext instead. The HMAC takes the content
     * as it passes, the received MAC and every byte that can be padding (the last PAD_WINDOW) are
     * compared by arithmetic, never branching on their values, and finish() adds the SHA-256
     * blocks a longest plaintext would have cost: neither the answer nor the record's total time
     * tells a padding error from a MAC error. The only branch on the result is in finish().
     */
    private short takeCbc(byte[] buf, short off, short len, short pos) {
        if ((short) (len % 16) != 0) {
            return -1;
        }
        short i = off;
        if (pos == 0 && len > 0) {
            Util.arrayCopyNonAtomic(buf, i, ram, CHAIN, CBC_IV_SIZE);
            i += CBC_IV_SIZE;
            pos += CBC_IV_SIZE;
        }
        short r = (short) (off + len - i);
        ps[S_POS] = (short) (pos + r);
        if (r == 0) {
            return 0;
        }
        Util.arrayCopyNonAtomic(buf, (short) (i + r - 16), ram, AAD, (short) 16); // the next IV
        cbc.init(clientKey, Cipher.MODE_DECRYPT, ram, CHAIN, CBC_IV_SIZE);
        cbc.doFinal(buf, i, r, buf, i);
        Util.arrayCopyNonAtomic(ram, AAD, ram, CHAIN, (short) 16);
        short q0 = (short) (pos - CBC_IV_SIZE); // plaintext position of buf[i]
        short n = (short) (ps[S_TOTAL] - CBC_IV_SIZE);
        short lenC = ps[S_LEN];
        short content = (short) (lenC - q0);
        if (content < 0) {
            content = 0;
        } else if (content > r) {
            content = r;
        }
        if (ps[S_MAC_DONE] == 0) {
            if (content == r && (short) (q0 + r) < lenC) {
                hmac.update(buf, i, content);
            } else {
                hmac.doFinal(buf, i, content, ram, MAC_OUT);
                ps[S_MAC_DONE] = 1;
            }
        }
        byte bad = (byte) ps[S_BAD];
        short padLength = ps[S_PAD];
        short windowStart = (short) (n - PAD_WINDOW);
        // The bytes that can be MAC or padding: the last PAD_WINDOW + MAC_SIZE of the plaintext,
        // each read whatever the padding length (the loop's length does not depend on it); the
        // padding is checked by arithmetic, without a branch on its bytes.
        short from = (short) (windowStart - MAC_SIZE - q0);
        if (from < 0) {
            from = 0;
        }
        for (short k = from; k < r; k++) {
            short q = (short) (q0 + k);
            short m = (short) (q - lenC);
            if (m >= 0 && m < MAC_SIZE) {
                bad |= (byte) (ram[(short) (MAC_OUT + m)] ^ buf[(short) (i + k)]);
            }
            if (q >= windowStart) {
                // inPadding: all ones if the byte is one of the padLength + 1 last, else 0.
                short fromEnd = (short) (n - 1 - q);
                short inPadding = (short) ~((short) (padLength - fromEnd) >> 15);
                bad |= (byte) ((buf[(short) (i + k)] ^ padLength) & inPadding);
            }
        }
        ps[S_BAD] = bad;
        Util.arrayCopyNonAtomic(buf, i, buf, off, content);
        return content;
    }

    /**
     * Ends a record begun with open(): its content length if every byte came and it
     * authenticates (the read sequence number then moves on), -1 if it does not (bad_record_mac),
     * -2 if fewer bytes came than its header announced.
     */
    short finish() {
        if (ps[S_POS] != ps[S_TOTAL]) {
            return -2;
        }
        short len = ps[S_LEN];
        boolean ok;
        if (kind[KIND] == KIND_CBC) {
            short n = (short) (ps[S_TOTAL] - CBC_IV_SIZE);
            // As many compression-function calls as the longest plaintext (no padding) would take.
            short extra = (short) (innerBlocks((short) (n - 1 - MAC_SIZE)) - innerBlocks(len));
            hmac.burn(extra);
            counters.count(OpCounters.SHA256_BLOCKS, extra);
            countCbc(len, n);
            Util.arrayFillNonAtomic(ram, MAC_OUT, MAC_SIZE, (byte) 0);
            ok = ps[S_BAD] == 0;
        } else {
            loadKeys();
            resumeAead(clientKey);
            short tag = tagLength();
            ok = kind[KIND] == KIND_GCM ? gcm.verifyTag(ram, MAC_OUT, tag) : ccm.verifyTag(ram, MAC_OUT, tag);
            countAead(len);
        }
        if (!ok) {
            ps[S_DTLS] = 0;
            return -1;
        }
        if (ps[S_DTLS] != 0) {
            ps[S_DTLS] = 0;
            accept();
        } else {
            increment(READ_SEQ);
        }
        return len;
    }

    /**
     * Starts protecting a record of {@code len} plaintext bytes: writes its header and explicit
     * nonce or IV at buf[off] and returns their length (prefixLength()). The write sequence
     * number is used up here, before any ciphertext leaves: a record abandoned half-way never
     * lets a nonce serve twice.
     */
    short begin(byte type, short len, byte[] buf, short off) {
        loadKeys();
        short fragment;
        ps[S_POS] = 0;
        ps[S_TOTAL] = len;
        ps[S_TYPE] = type;
        short iv = (short) (off + headerLength());
        setAad(WRITE_SEQ, type, len);
        if (kind[KIND] == KIND_CBC) {
            short macked = (short) (len + MAC_SIZE);
            fragment = (short) (CBC_IV_SIZE + macked + 16 - (short) (macked % 16));
            random.generateData(buf, iv, CBC_IV_SIZE);
            counters.count(OpCounters.RANDOM_BYTES, CBC_IV_SIZE);
            Util.arrayCopyNonAtomic(buf, iv, ram, CHAIN, CBC_IV_SIZE);
            hmac.init(ram, SERVER_MAC, MAC_KEY_SIZE);
            hmac.update(ram, AAD, AAD_SIZE);
        } else {
            Util.arrayCopyNonAtomic(ram, WRITE_SEQ, buf, iv, EXPLICIT_NONCE_SIZE);
            Util.arrayCopyNonAtomic(ram, WRITE_SEQ, ram, (short) (NONCE + FIXED_IV_SIZE), EXPLICIT_NONCE_SIZE);
            beginAead(true, len, type);
            fragment = (short) (EXPLICIT_NONCE_SIZE + len + tagLength());
        }
        buf[off] = type;
        if (dtls()) {
            // RFC 6347 4.1: version, epoch and sequence number (the seq_num), length.
            Util.setShort(buf, (short) (off + 1), Tls.VERSION_DTLS12);
            Util.arrayCopyNonAtomic(ram, WRITE_SEQ, buf, (short) (off + 3), SEQ_NUM_SIZE);
            Util.setShort(buf, (short) (off + 11), fragment);
        } else {
            Util.setShort(buf, (short) (off + 1), Tls.VERSION_TLS12);
            Util.setShort(buf, (short) (off + 3), fragment);
        }
        increment(WRITE_SEQ);
        return prefixLength();
    }

    /**
     * Encrypts the next {@code len} plaintext bytes at buf[off] in place (RAM); not the last
     * ones (finishProtect). Returns len, or -1 past the announced length or (CBC) for a piece
     * that is not whole blocks.
     */
    short takePlain(byte[] buf, short off, short len) {
        short pos = ps[S_POS];
        if (len < 0 || (short) (ps[S_TOTAL] - pos) < len
                || (kind[KIND] == KIND_CBC && (short) (len % 16) != 0)) {
            return -1;
        }
        loadKeys();
        ps[S_POS] = (short) (pos + len);
        if (kind[KIND] == KIND_CBC) {
            hmac.update(buf, off, len);
            encryptCbc(buf, off, len);
        } else {
            resumeAead(serverKey);
            if (kind[KIND] == KIND_GCM) {
                gcm.update(buf, off, len, buf, off);
            } else {
                ccm.update(buf, off, len, buf, off);
            }
        }
        return len;
    }

    /**
     * The last {@code len} plaintext bytes at buf[off], encrypted in place and followed by the
     * tag (AEAD) or the encrypted MAC and padding (CBC); returns the bytes written from off, or
     * -1 when the pieces do not add up to the announced length.
     */
    short finishProtect(byte[] buf, short off, short len) {
        if (len < 0 || (short) (ps[S_POS] + len) != ps[S_TOTAL]) {
            return -1;
        }
        loadKeys();
        ps[S_POS] = ps[S_TOTAL];
        short total = ps[S_TOTAL];
        if (kind[KIND] == KIND_CBC) {
            short end = (short) (off + len);
            end += hmac.doFinal(buf, off, len, buf, end);
            // Padding: padLength + 1 bytes of value padLength, to a whole number of blocks.
            short padLength = (short) (15 - (short) ((short) (total + MAC_SIZE) % 16));
            Util.arrayFillNonAtomic(buf, end, (short) (padLength + 1), (byte) padLength);
            end += (short) (padLength + 1);
            encryptCbc(buf, off, (short) (end - off));
            countCbc(total, (short) (total + MAC_SIZE + padLength + 1));
            return (short) (end - off);
        }
        resumeAead(serverKey);
        if (kind[KIND] == KIND_GCM) {
            gcm.update(buf, off, len, buf, off);
            gcm.finishTag(buf, (short) (off + len));
        } else {
            ccm.update(buf, off, len, buf, off);
            ccm.finishTag(buf, (short) (off + len));
        }
        countAead(total);
        return (short) (len + tagLength());
    }

    /** The content type of the record in pieces. */
    byte pieceType() {
        return (byte) ps[S_TYPE];
    }

    /** Whether a piece of {@code len} bytes that is not the last can be taken: CBC takes whole blocks. */
    boolean takesPiece(short len) {
        return kind[KIND] != KIND_CBC || (short) (len % 16) == 0;
    }

    /** CBC encryption of whole blocks in place, chained from the last ciphertext block (CHAIN). */
    private void encryptCbc(byte[] buf, short off, short len) {
        if (len == 0) {
            return;
        }
        cbc.init(serverKey, Cipher.MODE_ENCRYPT, ram, CHAIN, CBC_IV_SIZE);
        cbc.doFinal(buf, off, len, buf, off);
        Util.arrayCopyNonAtomic(buf, (short) (off + len - 16), ram, CHAIN, (short) 16);
    }

    /** The AEAD's message: AAD and nonce (salt + the explicit part already in NONCE), then begin. */
    private void beginAead(boolean encrypt, short len, byte type) {
        setAad(encrypt ? WRITE_SEQ : READ_SEQ, type, len);
        Util.arrayCopyNonAtomic(ram, encrypt ? SERVER_IV : CLIENT_IV, ram, NONCE, FIXED_IV_SIZE);
        AESKey key = encrypt ? serverKey : clientKey;
        if (kind[KIND] == KIND_GCM) {
            gcm.setKey(key);
            gcm.begin(encrypt, ram, NONCE, ram, AAD, AAD_SIZE);
        } else {
            ccm.setKey(key);
            ccm.begin(encrypt, ram, NONCE, (short) 12, ram, AAD, AAD_SIZE, len, tagLength());
        }
    }

    private void resumeAead(AESKey key) {
        if (kind[KIND] == KIND_GCM) {
            gcm.resume(key);
        } else {
            ccm.resume(key);
        }
    }

    /** Protects the {@code len} plaintext bytes at off + prefixLength() (one piece); returns the record's length. */
    short protect(byte type, byte[] buf, short off, short len) {
        short prefix = begin(type, len, buf, off);
        return (short) (prefix + finishProtect(buf, (short) (off + prefix), len));
    }

    /**
     * Checks and decrypts the record at {@code off} (its header already validated by the caller,
     * in RAM); returns the plaintext length, the plaintext at off + RECORD_HEADER_SIZE, or -1 if
     * the record does not authenticate (bad_record_mac).
     */
    short unprotect(byte[] buf, short off) {
        short fragment = Util.getShort(buf, (short) (off + 3));
        short tail = fragment < 32 ? fragment : 32;
        short body = (short) (off + Tls.RECORD_HEADER_SIZE);
        if (open(buf, off, buf, (short) (body + fragment - tail)) < 0) {
            return -1;
        }
        take(buf, body, fragment);
        short len = finish();
        return len < 0 ? (short) -1 : len;
    }

    /** SHA-256 blocks of the inner hash of HMAC over the MAC header and len bytes. */
    private static short innerBlocks(short len) {
        short bytes = (short) (HmacSha256.BLOCK_SIZE + AAD_SIZE + len);
        return (short) ((short) (bytes >> 6) + 1 + (short) (((short) ((short) (bytes & 63) + 8)) >> 6));
    }

    /** Exact primitive counts of one AEAD record operation (see OpCounters). */
    private void countAead(short len) {
        if (kind[KIND] == KIND_GCM) {
            counters.count(OpCounters.AES_BLOCKS, (short) 2);   // H = E(K, 0) and E(K, J0)
            counters.countBlocks(OpCounters.AES_BLOCKS, len);
            counters.count(OpCounters.GHASH_BLOCKS, (short) 2); // the AAD block and the lengths block
            counters.countBlocks(OpCounters.GHASH_BLOCKS, len);
        } else {
            counters.count(OpCounters.AES_BLOCKS, (short) 3);   // B0, the AAD block, S0
            counters.countBlocks(OpCounters.AES_BLOCKS, len);   // CBC-MAC
            counters.countBlocks(OpCounters.AES_BLOCKS, len);   // CTR
        }
    }

    /** Exact primitive counts of HMAC-SHA256 over 13 + len bytes, and AES-CBC over cbcBytes. */
    private void countCbc(short len, short cbcBytes) {
        counters.count(OpCounters.HMAC, (short) 1);
        counters.countDigest((short) (64 + AAD_SIZE + len));
        counters.countDigest((short) (64 + MAC_SIZE));
        counters.countBlocks(OpCounters.AES_BLOCKS, cbcBytes);
    }

    /** additional_data = seq_num + type + version + length (RFC 5246 6.2.3.3). */
    private void setAad(short seqOff, byte type, short len) {
        boolean pending = seqOff == READ_SEQ && ps[S_DTLS] != 0;
        Util.arrayCopyNonAtomic(ram, pending ? CHAIN : seqOff, ram, AAD, SEQ_NUM_SIZE);
        ram[(short) (AAD + 8)] = type;
        Util.setShort(ram, (short) (AAD + 9), dtls() ? Tls.VERSION_DTLS12 : Tls.VERSION_TLS12);
        Util.setShort(ram, (short) (AAD + 11), len);
    }

    private void increment(short seqOff) {
        for (short i = (short) (seqOff + SEQ_NUM_SIZE - 1); i >= seqOff; i--) {
            ram[i]++;
            if (ram[i] != 0) {
                return;
            }
        }
    }

    /**
     * Writes the session's record state for the host's record layer (tandem mode): suite kind,
     * then client and server keys, MAC keys or IVs, and both sequence numbers. Returns the length.
     */
    short export(byte[] out, short off) {
        short start = off;
        out[off++] = (byte) kind[KIND];
        if (kind[KIND] == KIND_CBC) {
            off = Util.arrayCopyNonAtomic(ram, CLIENT_MAC, out, off, (short) (2 * MAC_KEY_SIZE));
        }
        off = Util.arrayCopyNonAtomic(ram, CLIENT_KEY, out, off, (short) (2 * AES_KEY_SIZE));
        if (kind[KIND] != KIND_CBC) {
            off = Util.arrayCopyNonAtomic(ram, CLIENT_IV, out, off, (short) (2 * FIXED_IV_SIZE));
        }
        off = Util.arrayCopyNonAtomic(ram, READ_SEQ, out, off, SEQ_SIZE);
        return (short) (off - start);
    }
}
