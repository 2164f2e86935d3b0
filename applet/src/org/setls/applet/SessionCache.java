package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import javacard.security.RandomData;

/**
 * Session resumption (RFC 5246 7.3 by session ID, RFC 5077 by ticket), decided in the card.
 *
 * <b>The sealed state.</b> What a resumed session needs, STATE_SIZE bytes: master secret (48),
 * suite (2), flags (1: bit 0 extended master secret), the identity slot (1), and the client
 * identity (CLIENT_SIZE bytes: the commonName of the client certificate the handshake verified, as
 * ClientCertStore keeps it per session: a length byte, 0 when the client did not authenticate,
 * then up to 64 bytes; a resumed session gets it back, so GET DATA 17 names its client). It
 * is sealed with AES-128-CCM (RFC 3610, a 12-byte nonce drawn per seal, a 16-byte tag, the key id
 * as AAD) under the <b>ticket key</b>: a persistent AESKey drawn in the card at install, which no
 * command reads. A ticket (RFC 5077 4) is key id (KEY_ID_SIZE bytes, in clear: it names the card,
 * so a host with several cards routes a ticket to its issuer; SELECT tag 87) || nonce || sealed
 * state || tag, TICKET_SIZE bytes. A ticket that does not open (another key id, a length other
 * than TICKET_SIZE, a tag that does not verify: any altered byte) is no ticket: the server runs
 * a full handshake, as RFC 5077 3.4 asks.
 *
 * <b>The session ID cache.</b> ENTRIES entries, each a session ID (ID_SIZE random bytes) and the
 * state sealed as in a ticket; oldest replaced (round robin). Which entries are valid is RAM
 * (Transients.CACHE_STATE, CLEAR_ON_RESET: a reset or a power loss forgets every cached session;
 * a reselection does not), so the master secret is kept only in RAM or sealed under the card's
 * key: in clear it is never written to EEPROM. The sealed entries are EEPROM because the J3R180
 * has 98 bytes of RAM to spare and a cache entry in clear would take 100 (docs/resources.md).
 * An entry is claimed (invalid) at the ServerHello that names its ID, sealed at the
 * ClientKeyExchange and becomes valid only once the client's Finished verified.
 *
 * RFC 7627 5.3: only sessions with the extended master secret are sealed; TlsServer checks the
 * flag again when it opens one.
 */
final class SessionCache {
    static final short ENTRIES = 4;
    static final short ID_SIZE = 16;
    static final short KEY_ID_SIZE = 8;
    private static final short NONCE_SIZE = 12;
    private static final short TAG_SIZE = 16;
    // The state, as sealed (offsets from its start).
    static final short STATE_MASTER = 0;
    static final short STATE_SUITE = Tls.MASTER_SECRET_SIZE;               // 48
    static final short STATE_FLAGS = (short) (STATE_SUITE + 2);            // 50
    static final short STATE_SLOT = (short) (STATE_FLAGS + 1);             // 51
    static final short STATE_CLIENT = (short) (STATE_SLOT + 1);            // 52
    /** The client's commonName as ClientCertStore keeps a session's: length (1) || up to 64 bytes. */
    static final short CLIENT_SIZE = ClientCertStore.SUBJECT_ENTRY;         // 65
    static final short STATE_SIZE = (short) (STATE_CLIENT + CLIENT_SIZE);  // 117
    static final byte FLAG_EXTENDED_MASTER_SECRET = 0x01;
    private static final short SEALED_SIZE = (short) (NONCE_SIZE + STATE_SIZE + TAG_SIZE); // 145
    static final short TICKET_SIZE = (short) (KEY_ID_SIZE + SEALED_SIZE);                 // 153
    private static final short ENTRY_SIZE = (short) (ID_SIZE + SEALED_SIZE);              // 161
    static final short ENTRIES_SIZE = (short) (ENTRIES * ENTRY_SIZE);                     // 644

    // RAM, CLEAR_ON_RESET: shorts of Transients.counters from Transients.CACHE_STATE.
    private static final short ST_VALID = Transients.CACHE_STATE;        // a bit per valid entry
    private static final short ST_NEXT = (short) (ST_VALID + 1);         // the entry claimed next
    private static final short ST_SERIAL = (short) (ST_VALID + 2);       // claims so far (1 to 8191, wrapping)
    private static final short ST_CLAIMS = (short) (ST_VALID + 3);       // per entry: the claim that holds it
    static final short STATE_SHORTS = (short) (3 + ENTRIES);
    /** A claim is serial << CLAIM_SHIFT | entry: a handshake whose entry was claimed again since cannot seal it. */
    private static final short CLAIM_SHIFT = 2;
    private static final short ENTRY_MASK = 3;

    private final byte[] entries;
    private final byte[] keyId;
    private final AESKey key;
    private final AesCcm ccm;
    private final RandomData random;
    private final OpCounters counters;
    private final short[] st;

    /** Allocated once, at install: the ticket key and its id are drawn here. */
    SessionCache(AesCcm ccm, RandomData random, OpCounters counters, Transients ram) {
        this.ccm = ccm;
        this.random = random;
        this.counters = counters;
        st = ram.counters;
        entries = new byte[ENTRIES_SIZE];
        keyId = new byte[KEY_ID_SIZE];
        random.generateData(keyId, (short) 0, KEY_ID_SIZE);
        key = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES, KeyBuilder.LENGTH_AES_128, false);
        random.generateData(ram.bytes, Transients.HANDSHAKE_KEYS, (short) 16);
        key.setKey(ram.bytes, Transients.HANDSHAKE_KEYS);
        ram.clearBytes(Transients.HANDSHAKE_KEYS, (short) 16);
    }

    /** SELECT tag 87: the ticket key's id (it names the card; it is no secret). */
    short writeKeyId(byte[] buf, short off) {
        return Util.arrayCopyNonAtomic(keyId, (short) 0, buf, off, KEY_ID_SIZE);
    }

    /** The bits of the valid entries (bit i: entry i). */
    short validEntries() {
        return st[ST_VALID];
    }

    /** Byte {@code i} of entry {@code e}'s session ID. */
    byte idByte(short e, short i) {
        return entries[(short) ((short) (e * ENTRY_SIZE) + i)];
    }

    /** The entry a claim names. */
    static short entryOf(short claim) {
        return (short) (claim & ENTRY_MASK);
    }

    /** True while no later claim took the claim's entry. */
    boolean holds(short claim) {
        return claim > 0 && st[(short) (ST_CLAIMS + entryOf(claim))] == claim;
    }

    /**
     * Claims the oldest entry for a new session: it is invalid from now on, its new session ID
     * drawn; returns the claim (entryOf() names the entry), which seal() and validate() take: a
     * handshake that outlived ENTRIES later claims lost its entry, and they then do nothing.
     */
    short claim() {
        short e = st[ST_NEXT];
        st[ST_NEXT] = (short) ((short) (e + 1) % ENTRIES);
        short serial = (short) (st[ST_SERIAL] + 1);
        if (serial > 8191) {
            serial = 1;
        }
        st[ST_SERIAL] = serial;
        short claim = (short) ((short) (serial << CLAIM_SHIFT) | e);
        st[(short) (ST_CLAIMS + e)] = claim;
        st[ST_VALID] &= (short) ~(short) (1 << e);
        JCSystem.beginTransaction();
        random.generateData(entries, (short) (e * ENTRY_SIZE), ID_SIZE);
        JCSystem.commitTransaction();
        counters.count(OpCounters.RANDOM_BYTES, ID_SIZE);
        counters.count(OpCounters.EEPROM_BYTES, ID_SIZE);
        return claim;
    }

    /** Writes entry {@code e}'s session ID at buf[off]; returns the offset after it. */
    short writeId(short e, byte[] buf, short off) {
        return Util.arrayCopyNonAtomic(entries, (short) (e * ENTRY_SIZE), buf, off, ID_SIZE);
    }

    /**
     * Seals the state at state[off] (STATE_SIZE bytes, RAM) into the claim's entry (still invalid:
     * a tear leaves an entry that is never opened); nothing if the claim lost its entry.
     */
    void seal(short claim, byte[] state, short off) {
        if (!holds(claim)) {
            return;
        }
        short e = entryOf(claim);
        short nonce = (short) ((short) (e * ENTRY_SIZE) + ID_SIZE);
        short sealed = (short) (nonce + NONCE_SIZE);
        JCSystem.beginTransaction();
        random.generateData(entries, nonce, NONCE_SIZE);
        ccm.setKey(key);
        ccm.begin(true, entries, nonce, NONCE_SIZE, keyId, (short) 0, KEY_ID_SIZE, STATE_SIZE, TAG_SIZE);
        ccm.update(state, off, STATE_SIZE, entries, sealed);
        ccm.finishTag(entries, (short) (sealed + STATE_SIZE));
        JCSystem.commitTransaction();
        countCcm();
        counters.count(OpCounters.RANDOM_BYTES, NONCE_SIZE);
        counters.count(OpCounters.EEPROM_BYTES, SEALED_SIZE);
    }

    /** The Finished verified: the claim's entry may be resumed (if the claim still holds it). */
    void validate(short claim) {
        if (holds(claim)) {
            st[ST_VALID] |= (short) (1 << entryOf(claim));
        }
    }

    /** Forgets entry {@code e} (a session that failed after it was sealed). */
    void invalidate(short e) {
        st[ST_VALID] &= (short) ~(short) (1 << e);
    }

    /** The ticket of entry {@code e} (key id || nonce || sealed state || tag) at buf[off]; returns the offset after it. */
    short writeTicket(short e, byte[] buf, short off) {
        off = Util.arrayCopyNonAtomic(keyId, (short) 0, buf, off, KEY_ID_SIZE);
        return Util.arrayCopyNonAtomic(entries, (short) ((short) (e * ENTRY_SIZE) + ID_SIZE), buf, off, SEALED_SIZE);
    }

    /** Entry {@code e}'s sealed part, for a transcript: the array and offset (TICKET_SIZE - KEY_ID_SIZE bytes). */
    byte[] entryArray() {
        return entries;
    }

    static short sealedOffset(short e) {
        return (short) ((short) (e * ENTRY_SIZE) + ID_SIZE);
    }

    static short sealedSize() {
        return SEALED_SIZE;
    }

    byte[] keyIdArray() {
        return keyId;
    }

    /** Opens valid entry {@code e} into out[outOff] (STATE_SIZE bytes of RAM); false (out wiped) if it does not. */
    boolean openEntry(short e, byte[] out, short outOff) {
        if (e < 0 || e >= ENTRIES || (st[ST_VALID] & (short) (1 << e)) == 0) {
            return false;
        }
        return open(entries, sealedOffset(e), out, outOff);
    }

    /**
     * Opens a ticket of {@code len} bytes at buf[off] into out[outOff] (RAM); false (out wiped)
     * if it is not one of this card's or does not authenticate.
     */
    boolean openTicket(byte[] buf, short off, short len, byte[] out, short outOff) {
        if (len != TICKET_SIZE || Util.arrayCompare(buf, off, keyId, (short) 0, KEY_ID_SIZE) != 0) {
            return false;
        }
        return open(buf, (short) (off + KEY_ID_SIZE), out, outOff);
    }

    private boolean open(byte[] in, short off, byte[] out, short outOff) {
        ccm.setKey(key);
        ccm.begin(false, in, off, NONCE_SIZE, keyId, (short) 0, KEY_ID_SIZE, STATE_SIZE, TAG_SIZE);
        ccm.update(in, (short) (off + NONCE_SIZE), STATE_SIZE, out, outOff);
        countCcm();
        if (ccm.verifyTag(in, (short) (off + NONCE_SIZE + STATE_SIZE), TAG_SIZE)) {
            return true;
        }
        Util.arrayFillNonAtomic(out, outOff, STATE_SIZE, (byte) 0);
        return false;
    }

    /** B0, the AAD block, S0, then the CBC-MAC and CTR blocks of the state. */
    private void countCcm() {
        counters.count(OpCounters.AES_BLOCKS, (short) 3);
        counters.countBlocks(OpCounters.AES_BLOCKS, STATE_SIZE);
        counters.countBlocks(OpCounters.AES_BLOCKS, STATE_SIZE);
    }
}
