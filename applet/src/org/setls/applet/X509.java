package org.setls.applet;

import javacard.framework.Util;

/**
 * A strict reader of the X.509 v3 certificates (RFC 5280 section 4.1) a TLS client presents: DER
 * only (X.690: definite, minimal lengths of at most two bytes, each element inside its parent),
 * ecdsa-with-SHA256 signatures and P-256 (prime256v1) keys. It records where each field is; it
 * copies nothing. A certificate that is not DER, is cut short or has bytes after it is a
 * {@code bad_certificate}; a well-formed one with another algorithm or curve is an
 * {@code unsupported_certificate} (both raised through the TlsAlert). Stateless: the fields go into
 * {@code FIELDS} shorts of the caller's array.
 */
final class X509 {
    // Field offsets within the caller's FIELDS shorts.
    /** The TBSCertificate (its whole TLV): what the issuer signed. */
    static final short TBS = 0;
    static final short TBS_LENGTH = 1;
    /** The serialNumber's contents (no tag or length). */
    static final short SERIAL = 2;
    static final short SERIAL_LENGTH = 3;
    /** The issuer and the subject Names, whole TLVs (DER, as the CertificateRequest lists names). */
    static final short ISSUER = 4;
    static final short ISSUER_LENGTH = 5;
    static final short SUBJECT = 6;
    static final short SUBJECT_LENGTH = 7;
    /** notBefore and notAfter: offsets of their TLVs (UTCTime or GeneralizedTime). */
    static final short NOT_BEFORE = 8;
    static final short NOT_AFTER = 9;
    /** The subject's P-256 point: 65 bytes, 04 X Y. */
    static final short POINT = 10;
    /** The signatureValue's contents after the unused-bits byte: the DER ECDSA-Sig-Value. */
    static final short SIGNATURE = 11;
    static final short SIGNATURE_LENGTH = 12;
    /** The subject's first commonName value (0 length if none). */
    static final short COMMON_NAME = 13;
    static final short COMMON_NAME_LENGTH = 14;
    /** 1 when basicConstraints says cA TRUE. */
    static final short IS_CA = 15;
    static final short FIELDS = 16;

    /** Largest certificate the card takes (issue 12: 1 KB each). */
    static final short CERTIFICATE_MAX = 1024;
    /** Serial numbers are at most 20 octets (RFC 5280 4.1.2.2). */
    static final short SERIAL_MAX = 20;

    static final byte SEQUENCE = 0x30;
    static final byte SET = 0x31;
    static final byte INTEGER = 0x02;
    static final byte BIT_STRING = 0x03;
    static final byte OCTET_STRING = 0x04;
    static final byte OID = 0x06;
    static final byte BOOLEAN = 0x01;
    static final byte UTC_TIME = 0x17;
    static final byte GENERALIZED_TIME = 0x18;
    static final byte CONTEXT_0 = (byte) 0xA0;
    static final byte CONTEXT_1 = (byte) 0x81;
    static final byte CONTEXT_2 = (byte) 0x82;
    static final byte CONTEXT_3 = (byte) 0xA3;

    /** ecdsa-with-SHA256, 1.2.840.10045.4.3.2 (RFC 5758 3.2): the AlgorithmIdentifier, no parameters. */
    private static final byte[] ECDSA_SHA256 = {0x30, 0x0A, 0x06, 0x08, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE,
        0x3D, 0x04, 0x03, 0x02};
    /** id-ecPublicKey with prime256v1 (RFC 5480 2.1.1): the SPKI's AlgorithmIdentifier. */
    private static final byte[] EC_P256 = {0x30, 0x13, 0x06, 0x07, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE, 0x3D,
        0x02, 0x01, 0x06, 0x08, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE, 0x3D, 0x03, 0x01, 0x07};
    /** id-ecPublicKey, the start of any EC key's AlgorithmIdentifier (another curve: unsupported). */
    private static final byte[] EC_KEY_PREFIX = {0x06, 0x07, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE, 0x3D, 0x02, 0x01};
    /** id-at-commonName 2.5.4.3 and id-ce-basicConstraints 2.5.29.19, as DER OIDs. */
    private static final byte[] COMMON_NAME_OID = {0x06, 0x03, 0x55, 0x04, 0x03};
    private static final byte[] BASIC_CONSTRAINTS_OID = {0x06, 0x03, 0x55, 0x1D, 0x13};

    private X509() {
    }

    /**
     * Parses the DER certificate at c[off, off+len) into f[base, base+FIELDS); raises
     * bad_certificate or unsupported_certificate.
     */
    static void parse(byte[] c, short off, short len, short[] f, short base, TlsAlert alert) {
        for (short i = 0; i < FIELDS; i++) {
            f[(short) (base + i)] = 0;
        }
        if (len > CERTIFICATE_MAX) {
            alert.raise(Tls.ALERT_UNSUPPORTED_CERTIFICATE);
        }
        short end = (short) (off + len);
        short body = contents(c, off, end, SEQUENCE, alert);
        if (next(c, off, end, alert) != end) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE); // bytes after the certificate
        }
        short tbsEnd = next(c, body, end, SEQUENCE, alert);
        f[(short) (base + TBS)] = body;
        f[(short) (base + TBS_LENGTH)] = (short) (tbsEnd - body);
        parseTbs(c, body, tbsEnd, f, base, alert);
        short p = tbsEnd;
        short q = next(c, p, end, SEQUENCE, alert);
        requireAlgorithm(c, p, q, alert);
        short bits = contents(c, q, end, BIT_STRING, alert);
        short bitsEnd = next(c, q, end, BIT_STRING, alert);
        if (bitsEnd != end || (short) (bitsEnd - bits) < 9 || c[bits] != 0) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
        f[(short) (base + SIGNATURE)] = (short) (bits + 1);
        f[(short) (base + SIGNATURE_LENGTH)] = (short) (bitsEnd - bits - 1);
    }

    private static void parseTbs(byte[] c, short tbs, short tbsEnd, short[] f, short base, TlsAlert alert) {
        short p = contents(c, tbs, tbsEnd, SEQUENCE, alert);
        if (c[p] == CONTEXT_0) {
            p = next(c, p, tbsEnd, CONTEXT_0, alert); // version (v3; any is read the same way)
        }
        short serial = contents(c, p, tbsEnd, INTEGER, alert);
        p = next(c, p, tbsEnd, INTEGER, alert);
        short serialLength = (short) (p - serial);
        if (serialLength < 1 || serialLength > SERIAL_MAX) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
        f[(short) (base + SERIAL)] = serial;
        f[(short) (base + SERIAL_LENGTH)] = serialLength;
        short q = next(c, p, tbsEnd, SEQUENCE, alert);
        requireAlgorithm(c, p, q, alert); // the signature field (must match the outer one: both fixed)
        p = q;
        q = next(c, p, tbsEnd, SEQUENCE, alert);
        f[(short) (base + ISSUER)] = p;
        f[(short) (base + ISSUER_LENGTH)] = (short) (q - p);
        p = q;
        short validity = contents(c, p, tbsEnd, SEQUENCE, alert);
        short validityEnd = next(c, p, tbsEnd, SEQUENCE, alert);
        f[(short) (base + NOT_BEFORE)] = validity;
        short t = time(c, validity, validityEnd, alert);
        f[(short) (base + NOT_AFTER)] = t;
        if (time(c, t, validityEnd, alert) != validityEnd) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
        p = validityEnd;
        q = next(c, p, tbsEnd, SEQUENCE, alert);
        f[(short) (base + SUBJECT)] = p;
        f[(short) (base + SUBJECT_LENGTH)] = (short) (q - p);
        commonName(c, p, q, f, base, alert);
        p = q;
        q = next(c, p, tbsEnd, SEQUENCE, alert);
        f[(short) (base + POINT)] = point(c, p, q, alert);
        p = q;
        if (p < tbsEnd && c[p] == CONTEXT_1) {
            p = next(c, p, tbsEnd, CONTEXT_1, alert); // issuerUniqueID
        }
        if (p < tbsEnd && c[p] == CONTEXT_2) {
            p = next(c, p, tbsEnd, CONTEXT_2, alert); // subjectUniqueID
        }
        if (p < tbsEnd) {
            q = next(c, p, tbsEnd, CONTEXT_3, alert);
            extensions(c, contents(c, p, q, CONTEXT_3, alert), q, f, base, alert);
            p = q;
        }
        if (p != tbsEnd) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
    }

    /** The AlgorithmIdentifier at c[p, q) must be ecdsa-with-SHA256 (unsupported_certificate). */
    private static void requireAlgorithm(byte[] c, short p, short q, TlsAlert alert) {
        if ((short) (q - p) != (short) ECDSA_SHA256.length
                || Util.arrayCompare(c, p, ECDSA_SHA256, (short) 0, (short) ECDSA_SHA256.length) != 0) {
            alert.raise(Tls.ALERT_UNSUPPORTED_CERTIFICATE);
        }
    }

    /** The SubjectPublicKeyInfo at c[p, q): a P-256 point's offset (another key: unsupported_certificate). */
    private static short point(byte[] c, short p, short q, TlsAlert alert) {
        short body = contents(c, p, q, SEQUENCE, alert);
        short algEnd = next(c, body, q, SEQUENCE, alert);
        short alg = contents(c, body, algEnd, SEQUENCE, alert);
        if ((short) (algEnd - body) != (short) EC_P256.length
                || Util.arrayCompare(c, body, EC_P256, (short) 0, (short) EC_P256.length) != 0) {
            if ((short) (algEnd - alg) >= (short) EC_KEY_PREFIX.length
                    && Util.arrayCompare(c, alg, EC_KEY_PREFIX, (short) 0, (short) EC_KEY_PREFIX.length) == 0) {
                alert.raise(Tls.ALERT_UNSUPPORTED_CERTIFICATE); // EC on another curve (P-384 ...)
            }
            alert.raise(Tls.ALERT_UNSUPPORTED_CERTIFICATE); // RSA, Ed25519, ...
        }
        short bits = contents(c, algEnd, q, BIT_STRING, alert);
        if (next(c, algEnd, q, BIT_STRING, alert) != q || (short) (q - bits) != (short) (1 + P256.POINT_SIZE)
                || c[bits] != 0 || c[(short) (bits + 1)] != 4) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE); // P-256 but not an uncompressed point
        }
        return (short) (bits + 1);
    }

    /** A UTCTime or GeneralizedTime at t, ending with Z; returns the offset after it. */
    private static short time(byte[] c, short t, short end, TlsAlert alert) {
        byte tag = t < end ? c[t] : 0;
        short body = contents(c, t, end, tag, alert);
        short after = next(c, t, end, tag, alert);
        short length = (short) (after - body);
        if (!(tag == UTC_TIME && length == 13) && !(tag == GENERALIZED_TIME && length == 15)) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE); // RFC 5280 4.1.2.5: seconds, Z, no fractions
        }
        for (short i = 0; i < (short) (length - 1); i++) {
            byte d = c[(short) (body + i)];
            if (d < '0' || d > '9') {
                alert.raise(Tls.ALERT_BAD_CERTIFICATE);
            }
        }
        if (c[(short) (after - 1)] != 'Z') {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
        return after;
    }

    /**
     * A time's TLV at c[t] as 7 bytes at out[o]: year (2, big-endian), month, day, hour, minute,
     * second, comparable byte by byte (unsigned). UTCTime years 50-99 are 19xx (RFC 5280 4.1.2.5.1).
     */
    static void timeBytes(byte[] c, short t, byte[] out, short o) {
        short p = (short) (t + 2);
        short year;
        if (c[t] == UTC_TIME) {
            year = twoDigits(c, p);
            year += year < 50 ? 2000 : 1900;
            p += 2;
        } else {
            year = (short) (twoDigits(c, p) * 100 + twoDigits(c, (short) (p + 2)));
            p += 4;
        }
        Util.setShort(out, o, year);
        for (short i = 0; i < 5; i++) {
            out[(short) (o + 2 + i)] = (byte) twoDigits(c, (short) (p + 2 * i));
        }
    }

    private static short twoDigits(byte[] c, short p) {
        return (short) ((short) (c[p] - '0') * 10 + (short) (c[(short) (p + 1)] - '0'));
    }

    /** Unsigned comparison of two 7-byte times: negative, 0 or positive. */
    static short compareTimes(byte[] a, short ao, byte[] b, short bo) {
        for (short i = 0; i < 7; i++) {
            short x = (short) (a[(short) (ao + i)] & 0xFF);
            short y = (short) (b[(short) (bo + i)] & 0xFF);
            if (x != y) {
                return (short) (x - y);
            }
        }
        return 0;
    }

    /** The Name at c[p, q): every RDN a SET of AttributeTypeAndValue; the first commonName noted. */
    private static void commonName(byte[] c, short p, short q, short[] f, short base, TlsAlert alert) {
        short r = contents(c, p, q, SEQUENCE, alert);
        while (r < q) {
            short setEnd = next(c, r, q, SET, alert);
            short a = contents(c, r, setEnd, SET, alert);
            while (a < setEnd) {
                short atvEnd = next(c, a, setEnd, SEQUENCE, alert);
                short type = contents(c, a, atvEnd, SEQUENCE, alert);
                short value = next(c, type, atvEnd, OID, alert);
                short valueEnd = next(c, value, atvEnd, c[value], alert);
                if (valueEnd != atvEnd) {
                    alert.raise(Tls.ALERT_BAD_CERTIFICATE);
                }
                if (f[(short) (base + COMMON_NAME_LENGTH)] == 0
                        && (short) (value - type) == (short) COMMON_NAME_OID.length
                        && Util.arrayCompare(c, type, COMMON_NAME_OID, (short) 0, (short) COMMON_NAME_OID.length) == 0) {
                    short v = contents(c, value, atvEnd, c[value], alert);
                    f[(short) (base + COMMON_NAME)] = v;
                    f[(short) (base + COMMON_NAME_LENGTH)] = (short) (atvEnd - v);
                }
                a = atvEnd;
            }
            r = setEnd;
        }
    }

    /** Extensions: each SEQUENCE { OID, [BOOLEAN], OCTET STRING }; basicConstraints' cA noted. */
    private static void extensions(byte[] c, short p, short q, short[] f, short base, TlsAlert alert) {
        short r = contents(c, p, q, SEQUENCE, alert);
        if (next(c, p, q, SEQUENCE, alert) != q) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
        while (r < q) {
            short extEnd = next(c, r, q, SEQUENCE, alert);
            short oid = contents(c, r, extEnd, SEQUENCE, alert);
            short oidEnd = next(c, oid, extEnd, OID, alert);
            short s = oidEnd;
            if (s < extEnd && c[s] == BOOLEAN) {
                s = next(c, s, extEnd, BOOLEAN, alert); // critical (RFC 5280 4.2.1.9: a CA's basicConstraints is)
            }
            short value = contents(c, s, extEnd, OCTET_STRING, alert);
            if (next(c, s, extEnd, OCTET_STRING, alert) != extEnd) {
                alert.raise(Tls.ALERT_BAD_CERTIFICATE);
            }
            if ((short) (oidEnd - oid) == (short) BASIC_CONSTRAINTS_OID.length
                    && Util.arrayCompare(c, oid, BASIC_CONSTRAINTS_OID, (short) 0, (short) BASIC_CONSTRAINTS_OID.length) == 0) {
                // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen INTEGER OPTIONAL }
                short bc = contents(c, value, extEnd, SEQUENCE, alert);
                if (bc < extEnd && c[bc] == BOOLEAN) {
                    short b = contents(c, bc, extEnd, BOOLEAN, alert);
                    if ((short) (next(c, bc, extEnd, BOOLEAN, alert) - b) == 1 && c[b] == (byte) 0xFF) {
                        f[(short) (base + IS_CA)] = 1;
                    }
                }
            }
            r = extEnd;
        }
    }

    // ---- DER: tag, length, contents ---------------------------------------------------------

    /** The offset of the contents of the element at c[p] with tag {@code tag}, inside [p, end). */
    static short contents(byte[] c, short p, short end, byte tag, TlsAlert alert) {
        if ((short) (end - p) < 2 || c[p] != tag) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE);
        }
        short first = (short) (c[(short) (p + 1)] & 0xFF);
        short body;
        short length;
        if (first < 0x80) {
            body = (short) (p + 2);
            length = first;
        } else if (first == 0x81) {
            if ((short) (end - p) < 3 || (short) (c[(short) (p + 2)] & 0xFF) < 0x80) {
                alert.raise(Tls.ALERT_BAD_CERTIFICATE); // non-minimal
            }
            body = (short) (p + 3);
            length = (short) (c[(short) (p + 2)] & 0xFF);
        } else if (first == 0x82) {
            if ((short) (end - p) < 4 || c[(short) (p + 2)] == 0 || c[(short) (p + 2)] < 0) {
                alert.raise(Tls.ALERT_BAD_CERTIFICATE); // non-minimal, or 32 KB and more
            }
            body = (short) (p + 4);
            length = Util.getShort(c, (short) (p + 2));
        } else {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE); // indefinite, or longer than the card reads
            return 0;
        }
        if (length > (short) (end - body)) {
            alert.raise(Tls.ALERT_BAD_CERTIFICATE); // runs past its parent
        }
        return body;
    }

    /** The offset just after the element at c[p] (tag {@code tag}), which must end by {@code end}. */
    static short next(byte[] c, short p, short end, byte tag, TlsAlert alert) {
        short body = contents(c, p, end, tag, alert);
        short first = (short) (c[(short) (p + 1)] & 0xFF);
        short length = first < 0x80 ? first
                : first == 0x81 ? (short) (c[(short) (p + 2)] & 0xFF) : Util.getShort(c, (short) (p + 2));
        return (short) (body + length);
    }

    private static short next(byte[] c, short p, short end, TlsAlert alert) {
        return next(c, p, end, (short) (end - p) > 0 ? c[p] : 0, alert);
    }
}
