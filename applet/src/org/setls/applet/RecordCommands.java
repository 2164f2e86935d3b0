package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;

/**
 * The record layer's commands after a handshake (docs/apdu.md): UNPROTECT RECORD and PROTECT
 * RECORD when the records stay in the card, EXPORT KEYS when the host takes them over (tandem
 * mode). Records are collected in the I/O buffer at EapTls.MSG_OFF, across chained APDUs, and
 * processed in place.
 */
final class RecordCommands {
    private final TlsServer tls;
    private final EapTls eap;
    private final CommandInput input;
    private final ResponseStream out;
    private final byte[] io;

    /** Allocated once, at install. */
    RecordCommands(TlsServer tls, EapTls eap, CommandInput input, ResponseStream out, byte[] io) {
        this.tls = tls;
        this.eap = eap;
        this.input = input;
        this.out = out;
        this.io = io;
    }

    /** 6985 unless the EAP conversation is a TLS handshake that completed. */
    private void requireEstablished() {
        if (eap.current() != tls || tls.phase() != TlsServer.PHASE_ESTABLISHED) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
    }

    /** UNPROTECT RECORD: data = one TLS record; answer = content type + plaintext. */
    void unprotect(APDU apdu) {
        requireEstablished();
        short len = input.receive(apdu, io, EapTls.MSG_OFF, Persistent.MESSAGE_CAPACITY);
        if (len < 0) {
            return; // a link of a chain: 9000, send the next
        }
        byte type = io[EapTls.MSG_OFF];
        short plain = tls.unprotectRecord(io, EapTls.MSG_OFF, len);
        if (plain < 0) {
            // Content type 0 (no TLS record has it) marks a rejection; the alert's description
            // follows, then the protected fatal alert. Data cannot travel with an error status
            // word (T=0 drops it; Quirks: NO_T0_GET_RESPONSE).
            byte description = (byte) -plain;
            short n = tls.closeWithAlert(io, EapTls.MSG_OFF, description);
            io[(short) (EapTls.MSG_OFF - 2)] = Constants.REJECTED;
            io[(short) (EapTls.MSG_OFF - 1)] = description;
            out.send(apdu, io, (short) (EapTls.MSG_OFF - 2), (short) (n + 2));
            return;
        }
        short start = (short) (EapTls.MSG_OFF + tls.prefixLength() - 1);
        io[start] = type;
        out.send(apdu, io, start, (short) (plain + 1));
    }

    /** PROTECT RECORD: P1 = content type (alert or application data); answer = the record. */
    void protect(APDU apdu) {
        requireEstablished();
        byte type = apdu.getBuffer()[ISO7816.OFFSET_P1];
        if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        short len = input.receive(apdu, io, (short) (EapTls.MSG_OFF + tls.prefixLength()), Tls.MAX_PLAINTEXT);
        if (len < 0) {
            return;
        }
        short n = tls.protectRecord(type, io, EapTls.MSG_OFF, len);
        out.send(apdu, io, EapTls.MSG_OFF, n);
    }

    /** EXPORT KEYS (tandem mode): only if the identity's policy allows it and its PIN was verified. */
    void exportKeys(APDU apdu) {
        requireEstablished();
        Identity id = tls.boundIdentity();
        if (!id.mayExportKeys()) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        if (!id.isPinVerified()) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        byte[] buf = apdu.getBuffer();
        short n = tls.exportKeys(buf, (short) 0);
        apdu.setOutgoingAndSend((short) 0, n);
    }
}
