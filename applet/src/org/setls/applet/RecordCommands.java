package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;

/**
 * The record layer's commands after a handshake (docs/apdu.md): UNPROTECT RECORD and PROTECT
 * RECORD when the records stay in the card, EXPORT KEYS when the host takes them over (tandem
 * mode), CLOSE SESSION. P2 names the session (Sessions). Records are collected in the I/O buffer at
 * EapTls.MSG_OFF, across chained APDUs, and processed in place.
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
        sessions.claimIo(); // the record goes through the I/O buffer
    }

    /** UNPROTECT RECORD: data = one TLS record; answer = content type + plaintext. */
    void unprotect(APDU apdu) {
        requireEstablished(apdu);
        short len = input.receive(apdu, io, EapTls.MSG_OFF, Persistent.MESSAGE_CAPACITY);
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

    /**
     * PROTECT RECORD: P1 = content type (alert or application data); answer = the record. A
     * close_notify or a fatal alert ends the session once protected.
     */
    void protect(APDU apdu) {
        requireEstablished(apdu);
        byte type = apdu.getBuffer()[ISO7816.OFFSET_P1];
        if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        short len = input.receive(apdu, io, (short) (EapTls.MSG_OFF + tls.prefixLength()), Tls.MAX_PLAINTEXT);
        if (len < 0) {
            return;
        }
        short p = (short) (EapTls.MSG_OFF + tls.prefixLength());
        boolean closing = type == Tls.CONTENT_ALERT && len == 2
                && (io[p] == Tls.ALERT_FATAL || io[(short) (p + 1)] == Tls.ALERT_CLOSE_NOTIFY);
        short n = tls.protectRecord(type, io, EapTls.MSG_OFF, len);
        counters.count(OpCounters.EEPROM_BYTES, (short) (len + n)); // the plaintext in, the record in place
        if (closing) {
            eap.endSession();
        }
        out.send(apdu, io, EapTls.MSG_OFF, n);
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
