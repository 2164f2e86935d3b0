package org.setls.applet;

import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;

/**
 * What the card keeps in EEPROM about client certificates (issue 12): the revoked serial numbers
 * the operator manages (card-wide: PUT DATA / GET DATA {@code DATA_REVOKED}), and per session
 * handle the commonName of the client its handshake authenticated (GET DATA
 * {@code DATA_CLIENT_SUBJECT}, P2 = the handle), which the host reads after the handshake.
 */
final class ClientCertStore {
    /** Revoked serials: length (1..20) || serialNumber contents (DER INTEGER, no tag), repeated. */
    static final short REVOKED_MAX = 224;
    /** A session's client commonName: length (1) || up to SUBJECT_MAX bytes (longer ones cut). */
    static final short SUBJECT_MAX = 64;
    static final short SUBJECT_ENTRY = 1 + SUBJECT_MAX;

    private final byte[] revoked;
    private short revokedLength;
    private final byte[] subjects;

    /** Allocated once, at install. */
    ClientCertStore() {
        revoked = new byte[REVOKED_MAX];
        subjects = new byte[(short) (Sessions.SESSIONS * SUBJECT_ENTRY)];
    }

    /** PUT DATA revoked: the whole list, checked, then replaced in one transaction (6A80, 6700). */
    void setRevoked(byte[] buf, short off, short len) {
        if (len > REVOKED_MAX) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        short p = 0;
        while (p < len) {
            short n = (short) (buf[(short) (off + p)] & 0xFF);
            if (n == 0 || n > X509.SERIAL_MAX || n > (short) (len - p - 1)) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
            p += (short) (n + 1);
        }
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, off, revoked, (short) 0, len);
        revokedLength = len;
        JCSystem.commitTransaction();
    }

    /** GET DATA revoked; returns the length written at buf[off]. */
    short writeRevoked(byte[] buf, short off) {
        return (short) (Util.arrayCopyNonAtomic(revoked, (short) 0, buf, off, revokedLength) - off);
    }

    /** Whether the serialNumber contents at c[off, off+len) are on the list. */
    boolean isRevoked(byte[] c, short off, short len) {
        short p = 0;
        while (p < revokedLength) {
            short n = (short) (revoked[p] & 0xFF);
            if (n == len && Util.arrayCompare(revoked, (short) (p + 1), c, off, len) == 0) {
                return true;
            }
            p += (short) (n + 1);
        }
        return false;
    }

    /** A new handshake in {@code handle}: no client authenticated yet (one byte written if one was). */
    void forget(short handle) {
        short at = (short) (handle * SUBJECT_ENTRY);
        if (subjects[at] != 0) {
            subjects[at] = 0;
        }
    }

    /** The leaf's commonName, stored while its CertificateVerify is pending; returns the bytes kept. */
    short stage(short handle, byte[] c, short off, short len) {
        short n = len > SUBJECT_MAX ? SUBJECT_MAX : len;
        Util.arrayCopyNonAtomic(c, off, subjects, (short) (handle * SUBJECT_ENTRY + 1), n);
        return n;
    }

    /** The CertificateVerify verified: the staged commonName (n bytes) is the session's client. */
    void authenticated(short handle, short n) {
        subjects[(short) (handle * SUBJECT_ENTRY)] = (byte) (n == 0 ? SUBJECT_MAX + 1 : n);
    }

    /**
     * The session's client as a resumable session keeps it (SUBJECT_ENTRY bytes at out[off]): the
     * length byte as authenticated() left it (0: none), the commonName, zeros after it.
     */
    void copyEntry(short handle, byte[] out, short off) {
        short at = (short) (handle * SUBJECT_ENTRY);
        short n = (short) (subjects[at] & 0xFF);
        short kept = n > SUBJECT_MAX ? 0 : n;
        out[off] = (byte) n;
        Util.arrayCopyNonAtomic(subjects, (short) (at + 1), out, (short) (off + 1), kept);
        Util.arrayFillNonAtomic(out, (short) (off + 1 + kept), (short) (SUBJECT_MAX - kept), (byte) 0);
    }

    /**
     * A resumed session: its client as copyEntry() sealed it (in[off], SUBJECT_ENTRY bytes); the
     * commonName first, the length byte last (one byte: atomic). Returns the EEPROM bytes written.
     */
    short restoreEntry(short handle, byte[] in, short off) {
        short n = (short) (in[off] & 0xFF);
        if (n == 0 || n > SUBJECT_MAX + 1) {
            return 0; // none (begin() forgot the handle's client already)
        }
        short at = (short) (handle * SUBJECT_ENTRY);
        short kept = n > SUBJECT_MAX ? 0 : n;
        Util.arrayCopyNonAtomic(in, (short) (off + 1), subjects, (short) (at + 1), kept);
        subjects[at] = (byte) n;
        return (short) (kept + 1);
    }

    /** Whether the sealed client at in[off] (copyEntry()'s bytes) is an authenticated one. */
    static boolean hasClient(byte[] in, short off) {
        short n = (short) (in[off] & 0xFF);
        return n != 0 && n <= SUBJECT_MAX + 1;
    }

    /**
     * GET DATA client subject: 00 (no client authenticated) or 01 || commonName (possibly empty
     * when the certificate had none); returns the length. 6A86 for a handle the card does not have.
     */
    short writeSubject(short handle, byte[] buf, short off) {
        if (handle < 0 || handle >= Sessions.SESSIONS) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        short at = (short) (handle * SUBJECT_ENTRY);
        short n = (short) (subjects[at] & 0xFF);
        if (n == 0) {
            buf[off] = 0;
            return 1;
        }
        if (n > SUBJECT_MAX) {
            n = 0; // authenticated, no commonName
        }
        buf[off] = 1;
        Util.arrayCopyNonAtomic(subjects, (short) (at + 1), buf, (short) (off + 1), n);
        return (short) (n + 1);
    }
}
