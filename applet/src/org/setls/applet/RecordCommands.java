package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;

/**
 * The record layer's commands after a handshake (docs/apdu.md): UNPROTECT RECORD and PROTECT
 * RECORD when the records stay in the card, EXPORT KEYS when the host takes them over (tandem
 * mode), CLOSE SESSION. P2 names the session (Sessions).
 *
 * Record plaintext lives in RAM only (issue 10): a record is processed in place in the APDU
 * buffer, whole when one APDU carries it and its answer, otherwise in pieces across APDUs (P1's
 * two high bits: first, next, last piece), each piece decrypted or encrypted as it comes and its
 * result answered at once. Unprotecting in pieces is release-then-confirm: the plaintext of the
 * first pieces leaves before the record is known to authenticate, and the host keeps it only if
 * the last piece's answer says it did (docs/apdu.md, docs/resources.md). Nothing of a record is
 * written to the persistent I/O buffer. The pieces of one record come in a row: any other
 * command, or a piece of another session, abandons it (PIECE_OWNER).
 *
 * A session ends, and its slot is free for the next client, when the card protects a close_notify
 * or a fatal alert for it, rejects one of its records, exports its keys, or is told to close it.
 */
final class RecordCommands {
    /** The record in pieces: its command (high byte) and session (low byte); 0 if none. */
    private static final short OWNER = Transients.PIECE_OWNER;
    static final short OWNER_SIZE = 1;

    private final TlsServer tls;
    private final RecordCipher cipher;
    private final EapTls eap;
    private final Sessions sessions;
    private final CommandInput input;
    private final short[] st;

    /** Allocated once, at install; the piece state is the arena's. */
    RecordCommands(TlsServer tls, RecordCipher cipher, EapTls eap, Sessions sessions, CommandInput input,
                   Transients ram) {
        this.sessions = sessions;
        this.tls = tls;
        this.cipher = cipher;
        this.eap = eap;
        this.input = input;
        st = ram.shorts;
    }

    /** Any other command abandons a record in pieces (the dispatcher calls this for every command). */
    void abandonUnless(byte ins) {
        if ((short) ((st[OWNER] >> 8) & 0xFF) != (short) (ins & 0xFF)) {
            st[OWNER] = 0;
        }
    }

    /** Makes the session P2 names the active one; 6985 unless its handshake completed. */
    private void requireEstablished(APDU apdu) {
        sessions.use(apdu.getBuffer()[ISO7816.OFFSET_P2]);
        if (eap.current() != tls || tls.phase() != TlsServer.PHASE_ESTABLISHED) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
    }

    /** Most bytes a protected record adds to its plaintext: CBC's IV, MAC and padding, with the header. */
    private static final short EXPANSION_MAX = Tls.RECORD_HEADER_SIZE + 16 + 32 + 16;
    /** Most bytes the last piece of a protected record adds: CBC's MAC and padding. */
    private static final short TRAILER_MAX = 32 + 16;
    /** Room the rejection of a record takes: 2 bytes and a protected alert. */
    private static final short REJECTION_MAX = 2 + EXPANSION_MAX + 2;
    /** Bytes of the record's end that its first piece carries after the header (CBC reads them first). */
    private static final short TAIL_MAX = 32;

    /**
     * The command's data, all of it in the APDU buffer (which is RAM): its length at
     * apdu.getOffsetCdata(). A command that does not fit (a chain, or more than the card's APDU
     * buffer) is refused with 6A84 before anything is done: the host sends the record in pieces.
     */
    private short wholeData(APDU apdu) {
        short whole = input.wholeInBuffer(apdu, apdu.setIncomingAndReceive());
        if (whole < 0) {
            ISOException.throwIt(Sw.FILE_FULL);
        }
        return whole;
    }

    private short owner(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        return (short) (((buf[ISO7816.OFFSET_INS] & 0xFF) << 8) | (buf[ISO7816.OFFSET_P2] & 0xFF));
    }

    /** A NEXT or LAST piece continues the record its FIRST piece began, in the same session: 6985 if not. */
    private void requireOwner(APDU apdu) {
        if (st[OWNER] == 0 || st[OWNER] != owner(apdu)) {
            st[OWNER] = 0;
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
    }

    /** A host mistake in a record's pieces: the record is abandoned, the session kept (6700). */
    private void wrongPiece() {
        st[OWNER] = 0;
        ISOException.throwIt(Sw.WRONG_LENGTH);
    }

    /**
     * UNPROTECT RECORD. P1 00: data = one TLS record; P1 40, 80, C0: its first, next and last
     * piece (the first: header, the record's last min(32, fragment) bytes, then the fragment's
     * first bytes). Answer: content type + plaintext (whole, and each piece: its plaintext,
     * not yet authenticated but by the last), or a rejection: 00, the alert's description, the protected fatal alert.
     */
    void unprotect(APDU apdu) {
        requireEstablished(apdu);
        byte[] buf = apdu.getBuffer();
        byte p1 = buf[ISO7816.OFFSET_P1];
        if ((p1 & ~Constants.PIECE_MASK) != 0) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        byte piece = (byte) (p1 & Constants.PIECE_MASK);
        short whole = wholeData(apdu);
        short off = apdu.getOffsetCdata();
        if (piece == Constants.PIECE_WHOLE) {
            st[OWNER] = 0;
            if ((short) (off + REJECTION_MAX) > ResponseStream.bufferLength(buf)) {
                ISOException.throwIt(Sw.FILE_FULL);
            }
            if (cipher.headerLength() == Tls.DTLS_RECORD_HEADER_SIZE) {
                unprotectDtls(apdu, buf, off, whole);
            } else {
                unprotectWhole(apdu, buf, off, whole);
            }
            return;
        }
        if (cipher.headerLength() == Tls.DTLS_RECORD_HEADER_SIZE) {
            // A DTLS record fits one datagram, and one command with extended APDUs (docs/apdu.md).
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        short le = ResponseStream.outgoingLimit(apdu);
        if (le <= whole || le < REJECTION_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // Le too short for the answer: nothing was done
        }
        if (piece == Constants.PIECE_FIRST) {
            st[OWNER] = 0;
            if (whole < Tls.RECORD_HEADER_SIZE) {
                ISOException.throwIt(Sw.WRONG_LENGTH);
            }
            short fragment = Util.getShort(buf, (short) (off + 3));
            short tail = fragment < TAIL_MAX ? fragment : TAIL_MAX;
            if (fragment >= 0 && whole < (short) (Tls.RECORD_HEADER_SIZE + tail)) {
                ISOException.throwIt(Sw.WRONG_LENGTH);
            }
            byte refused = headerRefusal(buf, off);
            if (refused != 0) {
                reject(apdu, buf, refused);
                return;
            }
            if (cipher.open(buf, off, buf, (short) (off + Tls.RECORD_HEADER_SIZE)) < 0) {
                reject(apdu, buf, Tls.ALERT_BAD_RECORD_MAC);
                return;
            }
            st[OWNER] = owner(apdu);
            short at = (short) (off + Tls.RECORD_HEADER_SIZE + tail);
            short n = cipher.take(buf, at, (short) (whole - Tls.RECORD_HEADER_SIZE - tail));
            if (n < 0) {
                wrongPiece();
            }
            sendPlain(apdu, buf, at, n);
            return;
        }
        requireOwner(apdu);
        short n = cipher.take(buf, off, whole);
        if (n < 0) {
            wrongPiece();
        }
        if (piece == Constants.PIECE_NEXT) {
            sendPlain(apdu, buf, off, n);
            return;
        }
        st[OWNER] = 0;
        short plain = cipher.finish();
        if (plain == -2) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // fewer bytes than the header announced
        }
        if (plain < 0) {
            reject(apdu, buf, Tls.ALERT_BAD_RECORD_MAC);
            return;
        }
        if (plain > Tls.MAX_PLAINTEXT) {
            reject(apdu, buf, Tls.ALERT_RECORD_OVERFLOW);
            return;
        }
        sendPlain(apdu, buf, off, n);
    }

    /** A piece's answer: the record's content type, then the n plaintext bytes at buf[at] (at >= 1). */
    private void sendPlain(APDU apdu, byte[] buf, short at, short n) {
        buf[(short) (at - 1)] = cipher.pieceType();
        apdu.setOutgoingLength((short) (n + 1));
        apdu.sendBytes((short) (at - 1), (short) (n + 1));
    }

    /**
     * Content type 0 (no TLS record has it) marks a rejection; the alert's description follows,
     * then the protected fatal alert, and the session is over. Data cannot travel with an error
     * status word (T=0 drops it; Quirks: NO_T0_GET_RESPONSE). Direction already outgoing.
     */
    private void reject(APDU apdu, byte[] buf, byte description) {
        st[OWNER] = 0;
        short n = tls.closeWithAlert(buf, (short) 2, description);
        eap.endSession();
        buf[0] = Constants.REJECTED;
        buf[1] = description;
        apdu.setOutgoingLength((short) (n + 2));
        apdu.sendBytes((short) 0, (short) (n + 2));
    }

    /**
     * Why a received record's header (at buf[off], 5 bytes there) is refused: the alert's
     * description, or 0. unexpected_message for a content type an established session does not
     * take (a ChangeCipherSpec), protocol_version, record_overflow for more than 2^14 + 2048 bytes
     * of ciphertext (RFC 5246 6.2.1).
     */
    private static byte headerRefusal(byte[] buf, short off) {
        byte type = buf[off];
        if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT
                && type != Tls.CONTENT_HANDSHAKE) {
            return Tls.ALERT_UNEXPECTED_MESSAGE;
        }
        if (Util.getShort(buf, (short) (off + 1)) != Tls.VERSION_TLS12) {
            return Tls.ALERT_PROTOCOL_VERSION;
        }
        short fragment = Util.getShort(buf, (short) (off + 3));
        if (fragment < 0 || fragment > Tls.MAX_CIPHERTEXT) {
            return Tls.ALERT_RECORD_OVERFLOW;
        }
        return 0;
    }

    /**
     * UNPROTECT of a DTLS record (RFC 6347 4.1) the APDU buffer holds whole: a record of another
     * epoch, a replay (the window, 4.1.2.6) or one that does not authenticate (4.1.2.7) is
     * dropped, answered DROPPED, and the session goes on; a malformed header is rejected.
     */
    private void unprotectDtls(APDU apdu, byte[] buf, short off, short len) {
        short le = ResponseStream.outgoingLimit(apdu);
        if (le < len && le < REJECTION_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        byte type = buf[off];
        byte refused = 0;
        if (len < Tls.DTLS_RECORD_HEADER_SIZE) {
            refused = Tls.ALERT_DECODE_ERROR;
        } else if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT) {
            refused = Tls.ALERT_UNEXPECTED_MESSAGE;
        } else if (Util.getShort(buf, (short) (off + 1)) != Tls.VERSION_DTLS12) {
            refused = Tls.ALERT_PROTOCOL_VERSION;
        } else if ((short) (Util.getShort(buf, (short) (off + 11)) + Tls.DTLS_RECORD_HEADER_SIZE) != len) {
            refused = Tls.ALERT_DECODE_ERROR;
        }
        if (refused != 0) {
            reject(apdu, buf, refused);
            return;
        }
        short fragment = (short) (len - Tls.DTLS_RECORD_HEADER_SIZE);
        short body = (short) (off + Tls.DTLS_RECORD_HEADER_SIZE);
        short tail = fragment < TAIL_MAX ? fragment : TAIL_MAX;
        short plain = cipher.openDtls(buf, off, buf, (short) (body + fragment - tail));
        if (plain >= 0) {
            cipher.take(buf, body, fragment);
            plain = cipher.finish();
        }
        if (plain < 0 || plain > Tls.MAX_PLAINTEXT) {
            buf[0] = Constants.DROPPED;
            apdu.setOutgoingLength((short) 1);
            apdu.sendBytes((short) 0, (short) 1);
            return;
        }
        short start = (short) (body - 1);
        buf[start] = type;
        apdu.setOutgoingLength((short) (plain + 1));
        apdu.sendBytes(start, (short) (plain + 1));
    }

    /** UNPROTECT of a record the APDU buffer holds whole, in place there; the answer from there. */
    private void unprotectWhole(APDU apdu, byte[] buf, short off, short len) {
        short le = ResponseStream.outgoingLimit(apdu);
        if (le < len && le < REJECTION_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // Le too short for the answer: nothing was done
        }
        byte type = buf[off];
        byte refused = len < Tls.RECORD_HEADER_SIZE ? Tls.ALERT_DECODE_ERROR : headerRefusal(buf, off);
        if (refused == 0 && (short) (Util.getShort(buf, (short) (off + 3)) + Tls.RECORD_HEADER_SIZE) != len) {
            refused = Tls.ALERT_DECODE_ERROR; // the command carries one whole record
        }
        short plain = refused != 0 ? 0 : cipher.unprotect(buf, off);
        if (refused == 0 && plain < 0) {
            refused = Tls.ALERT_BAD_RECORD_MAC;
        }
        if (refused == 0 && plain > Tls.MAX_PLAINTEXT) {
            refused = Tls.ALERT_RECORD_OVERFLOW;
        }
        if (refused != 0) {
            reject(apdu, buf, refused);
            return;
        }
        short start = (short) (off + Tls.RECORD_HEADER_SIZE - 1);
        buf[start] = type;
        apdu.setOutgoingLength((short) (plain + 1));
        apdu.sendBytes(start, (short) (plain + 1));
    }

    /**
     * PROTECT RECORD. P1 = content type (alert or application data), whole; or 40, 80, C0 with
     * the type in its low bits (application data only): the first piece (data = the plaintext's
     * total length, 2 bytes, then its first bytes; answer = header, explicit nonce or IV, their
     * ciphertext), next pieces (answer = their ciphertext), the last (answer = its ciphertext and
     * the tag, or the encrypted MAC and padding). A close_notify or a fatal alert ends the session
     * once protected.
     */
    void protect(APDU apdu) {
        requireEstablished(apdu);
        byte[] buf = apdu.getBuffer();
        byte p1 = buf[ISO7816.OFFSET_P1];
        byte piece = (byte) (p1 & Constants.PIECE_MASK);
        byte type = (byte) (p1 & ~Constants.PIECE_MASK);
        if (type != Tls.CONTENT_APPLICATION_DATA
                && (type != Tls.CONTENT_ALERT || piece != Constants.PIECE_WHOLE)) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        short whole = wholeData(apdu);
        short off = apdu.getOffsetCdata();
        short room = ResponseStream.bufferLength(buf);
        if (piece == Constants.PIECE_WHOLE) {
            st[OWNER] = 0;
            short prefix = cipher.prefixLength();
            if (whole > Tls.MAX_PLAINTEXT || (short) (prefix + whole + EXPANSION_MAX) > room) {
                ISOException.throwIt(Sw.FILE_FULL);
            }
            protectWhole(apdu, buf, type, off, whole, prefix);
            return;
        }
        short le = ResponseStream.outgoingLimit(apdu);
        if (piece == Constants.PIECE_FIRST) {
            st[OWNER] = 0;
            short n = (short) (whole - 2);
            short prefix = cipher.prefixLength();
            if (n < 0 || (short) (prefix + n) > room || le < (short) (prefix + n)) {
                ISOException.throwIt(Sw.WRONG_LENGTH);
            }
            short total = Util.getShort(buf, off);
            if (total < n || total > Tls.MAX_PLAINTEXT || !cipher.takesPiece(n)) {
                ISOException.throwIt(Sw.WRONG_LENGTH);
            }
            st[OWNER] = owner(apdu); // before the record's header overwrites the command's
            Util.arrayCopyNonAtomic(buf, (short) (off + 2), buf, prefix, n);
            cipher.begin(type, total, buf, (short) 0); // the write sequence number is used from here on
            if (cipher.takePlain(buf, prefix, n) < 0) {
                wrongPiece();
            }
            apdu.setOutgoingLength((short) (prefix + n));
            apdu.sendBytes((short) 0, (short) (prefix + n));
            return;
        }
        requireOwner(apdu);
        if (piece == Constants.PIECE_NEXT) {
            if (le < whole || cipher.takePlain(buf, off, whole) < 0) {
                wrongPiece();
            }
            apdu.setOutgoingLength(whole);
            apdu.sendBytes(off, whole);
            return;
        }
        st[OWNER] = 0;
        if ((short) (off + whole + TRAILER_MAX) > room || le < (short) (whole + TRAILER_MAX)) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        short n = cipher.finishProtect(buf, off, whole);
        if (n < 0) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // the pieces do not add up to the announced length
        }
        apdu.setOutgoingLength(n);
        apdu.sendBytes(off, n);
    }

    /** PROTECT of a plaintext the APDU buffer holds whole: the record built there, sent from there. */
    private void protectWhole(APDU apdu, byte[] buf, byte type, short off, short len, short prefix) {
        short le = ResponseStream.outgoingLimit(apdu);
        if (le < (short) (len + EXPANSION_MAX)) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // Le too short for the record: nothing was done
        }
        Util.arrayCopyNonAtomic(buf, off, buf, prefix, len); // the plaintext where the record wants it
        boolean closing = type == Tls.CONTENT_ALERT && len == 2
                && (buf[prefix] == Tls.ALERT_FATAL || buf[(short) (prefix + 1)] == Tls.ALERT_CLOSE_NOTIFY);
        short n = tls.protectRecord(type, buf, (short) 0, len);
        if (closing) {
            eap.endSession();
        }
        apdu.setOutgoingLength(n);
        apdu.sendBytes((short) 0, n);
    }

    /** CLOSE SESSION: P2 = the session; it ends at once, whatever its state (no alert is written). */
    void close(APDU apdu) {
        sessions.use(apdu.getBuffer()[ISO7816.OFFSET_P2]);
        eap.endSession();
    }

    /** EXPORT KEYS (tandem mode): only if the identity's policy allows it and its PIN was verified. */
    void exportKeys(APDU apdu) {
        requireEstablished(apdu);
        Identity id = tls.boundIdentity();
        if (!id.mayExportKeys()) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        if (!id.isPinVerified()) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        byte[] buf = apdu.getBuffer();
        short n = tls.exportKeys(buf, (short) 0);
        eap.endSession(); // the keys are the host's now: the card's slot is free
        apdu.setOutgoingAndSend((short) 0, n);
    }
}
