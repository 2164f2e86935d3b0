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
 * A record that one APDU carries whole, whose answer fits that APDU, is processed in place in the
 * APDU buffer (RAM): its plaintext never reaches EEPROM (with extended APDUs, every record on
 * jcardsim). A longer one (chained APDUs, or more than a real card's APDU buffer holds) is still
 * collected in the I/O buffer at EapTls.MSG_OFF and processed there (docs/resources.md, issue 10).
 *
 * A session ends, and its slot is free for the next client, when the card protects a close_notify
 * or a fatal alert for it, rejects one of its records, exports its keys, or is told to close it.
 */
final class RecordCommands {
    private final TlsServer tls;
    private final EapTls eap;
    private final Sessions sessions;
    private final OpCounters counters;
    private final CommandInput input;
    private final ResponseStream out;
    private final byte[] io;

    /** Allocated once, at install. */
    RecordCommands(TlsServer tls, EapTls eap, Sessions sessions, CommandInput input, ResponseStream out,
                   byte[] io, OpCounters counters) {
        this.sessions = sessions;
        this.counters = counters;
        this.tls = tls;
        this.eap = eap;
        this.input = input;
        this.out = out;
        this.io = io;
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
    /** Room the rejection of a record takes: 2 bytes and a protected alert. */
    private static final short REJECTION_MAX = 2 + EXPANSION_MAX + 2;

    /** UNPROTECT RECORD: data = one TLS record; answer = content type + plaintext. */
    void unprotect(APDU apdu) {
        requireEstablished(apdu);
        byte[] buf = apdu.getBuffer();
        short got = apdu.setIncomingAndReceive();
        short off = apdu.getOffsetCdata();
        short whole = input.wholeInBuffer(apdu, got);
        if (whole >= 0 && (short) (off + REJECTION_MAX) <= ResponseStream.bufferLength(buf)) {
            unprotectInPlace(apdu, buf, off, whole);
            return;
        }
        sessions.claimIo(); // the record goes through the I/O buffer
        short len = input.collect(apdu, got, io, EapTls.MSG_OFF, Persistent.MESSAGE_CAPACITY);
        if (len < 0) {
            return; // a link of a chain: 9000, send the next
        }
        counters.count(OpCounters.EEPROM_BYTES, len);
        byte type = io[EapTls.MSG_OFF];
        short plain = tls.unprotectRecord(io, EapTls.MSG_OFF, len);
        if (plain < 0) {
            // Content type 0 (no TLS record has it) marks a rejection; the alert's description
            // follows, then the protected fatal alert. Data cannot travel with an error status
            // word (T=0 drops it; Quirks: NO_T0_GET_RESPONSE).
            byte description = (byte) -plain;
            short n = tls.closeWithAlert(io, EapTls.MSG_OFF, description);
            eap.endSession();
            counters.count(OpCounters.EEPROM_BYTES, (short) (n + 2));
            io[(short) (EapTls.MSG_OFF - 2)] = Constants.REJECTED;
            io[(short) (EapTls.MSG_OFF - 1)] = description;
            out.send(apdu, io, (short) (EapTls.MSG_OFF - 2), (short) (n + 2));
            return;
        }
        short start = (short) (EapTls.MSG_OFF + tls.prefixLength() - 1);
        counters.count(OpCounters.EEPROM_BYTES, (short) (plain + 1)); // decrypted in place
        io[start] = type;
        out.send(apdu, io, start, (short) (plain + 1));
    }

    /** UNPROTECT of a record the APDU buffer holds whole, in place there; the answer from there. */
    private void unprotectInPlace(APDU apdu, byte[] buf, short off, short len) {
        short le = ResponseStream.outgoingLimit(apdu);
        if (le < len && le < REJECTION_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // Le too short for the answer: nothing was done
        }
        byte type = buf[off];
        short plain = tls.unprotectRecord(buf, off, len);
        if (plain < 0) {
            byte description = (byte) -plain;
            short n = tls.closeWithAlert(buf, off, description);
            eap.endSession();
            buf[(short) (off - 2)] = Constants.REJECTED;
            buf[(short) (off - 1)] = description;
            apdu.setOutgoingLength((short) (n + 2));
            apdu.sendBytes((short) (off - 2), (short) (n + 2));
            return;
        }
        short start = (short) (off + tls.prefixLength() - 1);
        buf[start] = type;
        apdu.setOutgoingLength((short) (plain + 1));
        apdu.sendBytes(start, (short) (plain + 1));
    }

    /**
     * PROTECT RECORD: P1 = content type (alert or application data); answer = the record. A
     * close_notify or a fatal alert ends the session once protected.
     */
    void protect(APDU apdu) {
        requireEstablished(apdu);
        byte[] buf = apdu.getBuffer();
        byte type = buf[ISO7816.OFFSET_P1];
        if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        short got = apdu.setIncomingAndReceive();
        short whole = input.wholeInBuffer(apdu, got);
        short prefix = tls.prefixLength();
        if (whole >= 0 && whole <= Tls.MAX_PLAINTEXT
                && (short) (prefix + whole + EXPANSION_MAX) <= ResponseStream.bufferLength(buf)) {
            protectInPlace(apdu, buf, type, apdu.getOffsetCdata(), whole, prefix);
            return;
        }
        sessions.claimIo(); // the plaintext goes through the I/O buffer
        short len = input.collect(apdu, got, io, (short) (EapTls.MSG_OFF + prefix), Tls.MAX_PLAINTEXT);
        if (len < 0) {
            return;
        }
        short p = (short) (EapTls.MSG_OFF + tls.prefixLength());
        boolean closing = type == Tls.CONTENT_ALERT && len == 2
                && (io[p] == Tls.ALERT_FATAL || io[(short) (p + 1)] == Tls.ALERT_CLOSE_NOTIFY);
        short n = tls.protectRecord(type, io, EapTls.MSG_OFF, len);
        counters.count(OpCounters.EEPROM_BYTES, len); // the plaintext in ...
        counters.count(OpCounters.EEPROM_BYTES, n);   // ... and the record, in place
        if (closing) {
            eap.endSession();
        }
        out.send(apdu, io, EapTls.MSG_OFF, n);
    }

    /** PROTECT of a plaintext the APDU buffer holds whole: the record built there, sent from there. */
    private void protectInPlace(APDU apdu, byte[] buf, byte type, short off, short len, short prefix) {
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
