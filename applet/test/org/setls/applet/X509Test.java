package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.licel.jcardsim.base.Simulator;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.Signature;
import java.security.interfaces.ECPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The in-card X.509 reader (X509) and the chain check built on it (ClientAuth.onCertificate) on
 * the certificates a client may send, well-formed or not. Certificates are written here in DER
 * and signed with the JDK's ECDSA; every malformed one must end in its TLS alert (TlsAlert with
 * the AlertDescription), never another exception (which the applet would answer with 6F00). A
 * certificate under test sits at the very end of an array of its own size, so a read past its
 * end shows as an ArrayIndexOutOfBoundsException rather than a silent read of the next bytes.
 */
class X509Test {
    private static final byte[] ECDSA_SHA256 = seq(oid(0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02));
    private static final byte[] ECDSA_SHA384 = seq(oid(0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03));
    private static final byte[] BASIC_CONSTRAINTS = oid(0x55, 0x1D, 0x13);

    private static KeyPair rootKey;
    private static KeyPair intermediateKey;
    private static KeyPair leafKey;
    private static Transients ram;
    private static TlsAlert alert;
    private static Sessions sessions;
    private static Persistent persistent;
    private static ClientAuth clientAuth;
    private static Identity identity;

    @BeforeAll
    static void card() throws Exception {
        new Simulator();
        rootKey = ecKey("secp256r1");
        intermediateKey = ecKey("secp256r1");
        leafKey = ecKey("secp256r1");
        ram = new Transients();
        alert = new TlsAlert();
        sessions = new Sessions(ram);
        persistent = new Persistent(null);
        clientAuth = new ClientAuth(ram, alert, sessions, new OpCounters(ram), persistent,
                javacard.security.Signature.getInstance(javacard.security.Signature.ALG_ECDSA_SHA_256, false),
                javacard.security.MessageDigest.getInstance(javacard.security.MessageDigest.ALG_SHA_256, false));
        identity = persistent.slot((byte) 0);
        byte[] entry = caEntry(name("root CA"), rootKey);
        identity.upload(Constants.COMMIT_CAS, (short) 0, entry, (short) 0, (short) entry.length);
        identity.commitCas((short) entry.length);
        identity.setPolicy((byte) (Constants.POLICY_CLIENT_AUTH_OPTIONAL | Constants.POLICY_CLIENT_AUTH_REQUIRED));
    }

    @BeforeEach
    void session() {
        sessions.use((short) 0);
        if (sessions.handshakeSlot() < 0) {
            sessions.claimHandshake(); // a handshake in progress in session 0, as after a ClientHello
        }
        ram.bytes[Transients.CLOCK] = 0; // no host clock: dates are not checked under this policy
        byte[] none = {};
        persistent.clientCerts.setRevoked(none, (short) 0, (short) 0);
    }

    // ---- the certificates ---------------------------------------------------------------------

    static KeyPair ecKey(String curve) throws Exception {
        KeyPairGenerator generator = KeyPairGenerator.getInstance("EC");
        generator.initialize(new ECGenParameterSpec(curve));
        return generator.generateKeyPair();
    }

    /** A DER element: tag, definite minimal length, contents. */
    static byte[] der(int tag, byte[]... parts) {
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            body.writeBytes(p);
        }
        int n = body.size();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(tag);
        if (n < 0x80) {
            out.write(n);
        } else if (n < 0x100) {
            out.write(0x81);
            out.write(n);
        } else {
            out.write(0x82);
            out.write(n >> 8);
            out.write(n);
        }
        out.writeBytes(body.toByteArray());
        return out.toByteArray();
    }

    static byte[] seq(byte[]... parts) {
        return der(0x30, parts);
    }

    static byte[] oid(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            b[i] = (byte) bytes[i];
        }
        return der(0x06, b);
    }

    static byte[] name(String commonName) {
        return seq(der(0x31, seq(oid(0x55, 0x04, 0x03), der(0x0C, commonName.getBytes(StandardCharsets.UTF_8)))));
    }

    static byte[] caEntry(byte[] subject, KeyPair key) throws Exception {
        byte[] entry = new byte[Identity.CA_ENTRY];
        System.arraycopy(MessageDigest.getInstance("SHA-256").digest(subject), 0, entry, Identity.CA_HASH, 32);
        System.arraycopy(point(key), 0, entry, Identity.CA_POINT, 65);
        entry[Identity.CA_NAME_LENGTH] = (byte) subject.length;
        System.arraycopy(subject, 0, entry, Identity.CA_NAME, subject.length);
        return entry;
    }

    static byte[] point(KeyPair key) {
        byte[] spki = key.getPublic().getEncoded();
        return Arrays.copyOfRange(spki, spki.length - 65, spki.length);
    }

    /** What a certificate is made of; each test changes what it needs. */
    static final class Spec {
        byte[] serial = {0x5E, (byte) 0xC0, (byte) 0xDE};
        byte[] algorithm = ECDSA_SHA256;
        byte[] outerAlgorithm = ECDSA_SHA256;
        String issuer = "root CA";
        String subject = "alice";
        byte[] spki = leafKey.getPublic().getEncoded();
        KeyPair signer = rootKey;
        Boolean ca = null; // basicConstraints: absent, cA FALSE or cA TRUE
        int padding = 0;   // bytes of an extra extension, to make a large certificate

        Spec subject(String s, KeyPair key) {
            subject = s;
            spki = key.getPublic().getEncoded();
            return this;
        }

        byte[] tbs() {
            ByteArrayOutputStream ext = new ByteArrayOutputStream();
            if (ca != null) {
                ext.writeBytes(seq(BASIC_CONSTRAINTS, der(0x01, new byte[] {(byte) 0xFF}),
                        der(0x04, ca ? seq(der(0x01, new byte[] {(byte) 0xFF})) : seq())));
            }
            if (padding > 0) {
                ext.writeBytes(seq(oid(0x2A, 0x03, 0x04), der(0x04, new byte[padding])));
            }
            byte[] validity = seq(der(0x17, "250101000000Z".getBytes(StandardCharsets.US_ASCII)),
                    der(0x18, "20491231235959Z".getBytes(StandardCharsets.US_ASCII)));
            byte[] version = der(0xA0, der(0x02, new byte[] {2}));
            if (ext.size() == 0) {
                return seq(version, der(0x02, serial), algorithm, name(issuer), validity, name(subject), spki);
            }
            return seq(version, der(0x02, serial), algorithm, name(issuer), validity, name(subject), spki,
                    der(0xA3, seq(ext.toByteArray())));
        }

        byte[] build() throws Exception {
            byte[] tbs = tbs();
            Signature s = Signature.getInstance("SHA256withECDSA");
            s.initSign(signer.getPrivate());
            s.update(tbs);
            byte[] sig = s.sign();
            byte[] bits = new byte[sig.length + 1];
            System.arraycopy(sig, 0, bits, 1, sig.length);
            return seq(tbs, outerAlgorithm, der(0x03, bits));
        }
    }

    /** The alert X509.parse raises for the certificate (at the end of its own array), or -1. */
    static int parse(byte[] cert) {
        short[] fields = new short[X509.FIELDS];
        try {
            X509.parse(cert, (short) 0, (short) cert.length, fields, (short) 0, alert);
            return -1;
        } catch (TlsAlert a) {
            return a.getReason();
        }
    }

    /** The alert ClientAuth raises for a Certificate message with these certificates, or -1. */
    static int chain(byte[]... certs) {
        ByteArrayOutputStream list = new ByteArrayOutputStream();
        for (byte[] c : certs) {
            list.write(0);
            list.write(c.length >> 8);
            list.write(c.length);
            list.writeBytes(c);
        }
        byte[] body = new byte[3 + list.size()];
        body[1] = (byte) (list.size() >> 8);
        body[2] = (byte) list.size();
        System.arraycopy(list.toByteArray(), 0, body, 3, list.size());
        try {
            clientAuth.begin(identity);
            clientAuth.onCertificate(identity, body, (short) 0, (short) body.length);
            return -1;
        } catch (TlsAlert a) {
            return a.getReason();
        }
    }

    // ---- X509.parse -----------------------------------------------------------------------------

    @Test
    void aWellFormedCertificateIsReadFieldByField() throws Exception {
        byte[] cert = new Spec().build();
        short[] f = new short[X509.FIELDS];
        X509.parse(cert, (short) 0, (short) cert.length, f, (short) 0, alert);
        assertEquals(3, f[X509.SERIAL_LENGTH]);
        assertEquals(0x5E, cert[f[X509.SERIAL]]);
        assertEquals("alice", new String(cert, f[X509.COMMON_NAME], f[X509.COMMON_NAME_LENGTH], StandardCharsets.UTF_8));
        assertEquals(4, cert[f[X509.POINT]]);
        assertTrue(Arrays.equals(point(leafKey), Arrays.copyOfRange(cert, f[X509.POINT], f[X509.POINT] + 65)));
        assertEquals(0, f[X509.IS_CA]);
        byte[] t = new byte[7];
        X509.timeBytes(cert, f[X509.NOT_AFTER], t, (short) 0);
        assertTrue(Arrays.equals(new byte[] {0x08, 0x01, 12, 31, 23, 59, 59}, t), "2049-12-31 23:59:59");
    }

    @Test
    void aCriticalBasicConstraintsWithCaTrueMarksACa() throws Exception {
        short[] f = new short[X509.FIELDS];
        byte[] ca = intermediate(true); // basicConstraints critical, as RFC 5280 4.2.1.9 wants for a CA
        X509.parse(ca, (short) 0, (short) ca.length, f, (short) 0, alert);
        assertEquals(1, f[X509.IS_CA]);
        byte[] notCa = intermediate(false);
        X509.parse(notCa, (short) 0, (short) notCa.length, f, (short) 0, alert);
        assertEquals(0, f[X509.IS_CA]);
    }

    @Test
    void everyTruncationIsABadCertificate() throws Exception {
        byte[] cert = new Spec().build();
        for (int n = 0; n < cert.length; n++) {
            assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(Arrays.copyOf(cert, n)), "cut to " + n + " bytes");
        }
    }

    @Test
    void aBitFlipInAnyLengthByteIsAnAlertNeverAnotherException() throws Exception {
        byte[] cert = new Spec().build();
        for (int i = 0; i < cert.length; i++) {
            for (int bit = 0; bit < 8; bit++) {
                byte[] c = cert.clone();
                c[i] ^= (byte) (1 << bit);
                int reason = parse(c); // any alert, or accepted (a flipped name or key byte): not a crash
                assertTrue(reason == -1 || reason == Tls.ALERT_BAD_CERTIFICATE
                        || reason == Tls.ALERT_UNSUPPORTED_CERTIFICATE, "byte " + i + " bit " + bit + ": " + reason);
            }
        }
    }

    @Test
    void lengthsLongerOrShorterThanTheContentsAreBadCertificates() throws Exception {
        byte[] cert = new Spec().build(); // 30 82 hh ll | 30 82 hh ll (the TBSCertificate) ...
        assertEquals((byte) 0x82, cert[1], "long-form outer length");
        for (int delta : new int[] {-1, 1, 0x100}) {
            byte[] c = cert.clone();
            int tbs = ((c[6] & 0xFF) << 8 | (c[7] & 0xFF)) + delta;
            c[6] = (byte) (tbs >> 8);
            c[7] = (byte) tbs;
            assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(c), "TBSCertificate length " + delta);
        }
        byte[] trailing = Arrays.copyOf(cert, cert.length + 1);
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(trailing), "a byte after the certificate");
    }

    @Test
    void nonMinimalIndefiniteAndOverlongLengthFormsAreBadCertificates() throws Exception {
        byte[] cert = new Spec().build();
        int n = cert.length - 4;
        // 30 83 00 hh ll: three length bytes; 30 80 ... 00 00: indefinite (BER, not DER).
        byte[] three = new byte[cert.length + 1];
        three[0] = 0x30;
        three[1] = (byte) 0x83;
        three[2] = 0;
        three[3] = (byte) (n >> 8);
        three[4] = (byte) n;
        System.arraycopy(cert, 4, three, 5, n);
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(three), "0x83 form");
        byte[] indefinite = new byte[cert.length];
        indefinite[0] = 0x30;
        indefinite[1] = (byte) 0x80;
        System.arraycopy(cert, 4, indefinite, 2, n);
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(indefinite), "indefinite length");
        // The serial INTEGER 02 03 5E C0 DE written 02 81 03 ...: a long form for a short length.
        Spec spec = new Spec();
        byte[] tbs = spec.tbs();
        byte[] serial = {0x02, 0x03, 0x5E, (byte) 0xC0, (byte) 0xDE};
        int at = indexOf(tbs, serial);
        byte[] longSerial = new byte[tbs.length + 1];
        System.arraycopy(tbs, 0, longSerial, 0, at);
        longSerial[at] = 0x02;
        longSerial[at + 1] = (byte) 0x81;
        System.arraycopy(tbs, at + 1, longSerial, at + 2, tbs.length - at - 1);
        byte[] inner = Arrays.copyOfRange(longSerial, 4, longSerial.length); // re-wrap with the right length
        byte[] rewrapped = seq(inner);
        byte[] c = seq(rewrapped, ECDSA_SHA256, der(0x03, new byte[] {0, 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}));
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(c), "02 81 03: a non-minimal length");
    }

    @Test
    void aCertificateOverOneKilobyteIsRefusedAndOneJustUnderIsRead() throws Exception {
        Spec big = new Spec();
        big.padding = 800;
        byte[] cert = big.build();
        assertTrue(cert.length > X509.CERTIFICATE_MAX, "length " + cert.length);
        assertEquals(Tls.ALERT_UNSUPPORTED_CERTIFICATE, parse(cert));
        big.padding = 800 - (cert.length - X509.CERTIFICATE_MAX) - 8;
        byte[] fits = big.build();
        assertTrue(fits.length <= X509.CERTIFICATE_MAX && fits.length > 1000, "length " + fits.length);
        assertEquals(-1, parse(fits));
    }

    @Test
    void otherSignatureAlgorithmsAndKeysAreUnsupportedCertificates() throws Exception {
        Spec sha384 = new Spec();
        sha384.algorithm = ECDSA_SHA384;
        sha384.outerAlgorithm = ECDSA_SHA384;
        assertEquals(Tls.ALERT_UNSUPPORTED_CERTIFICATE, parse(sha384.build()), "ecdsa-with-SHA384");
        Spec p384 = new Spec();
        p384.spki = ecKey("secp384r1").getPublic().getEncoded();
        assertEquals(Tls.ALERT_UNSUPPORTED_CERTIFICATE, parse(p384.build()), "a P-384 key");
        Spec rsa = new Spec();
        KeyPairGenerator generator = KeyPairGenerator.getInstance("RSA");
        generator.initialize(1024);
        rsa.spki = generator.generateKeyPair().getPublic().getEncoded();
        assertEquals(Tls.ALERT_UNSUPPORTED_CERTIFICATE, parse(rsa.build()), "an RSA key");
        Spec mismatch = new Spec();
        mismatch.outerAlgorithm = ECDSA_SHA384;
        assertEquals(Tls.ALERT_UNSUPPORTED_CERTIFICATE, parse(mismatch.build()), "outer algorithm not the TBS one");
    }

    @Test
    void aCompressedPointIsABadCertificate() throws Exception {
        Spec spec = new Spec();
        byte[] p = point(leafKey);
        byte[] compressed = new byte[33];
        compressed[0] = (byte) (2 + (p[64] & 1));
        System.arraycopy(p, 1, compressed, 1, 32);
        byte[] full = leafKey.getPublic().getEncoded();
        byte[] algorithm = Arrays.copyOfRange(full, 2, 2 + 2 + (full[3] & 0xFF)); // the SPKI's AlgorithmIdentifier
        byte[] bits = new byte[34];
        System.arraycopy(compressed, 0, bits, 1, 33);
        spec.spki = seq(algorithm, der(0x03, bits));
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, parse(spec.build()));
    }

    // ---- ClientAuth.onCertificate: the chain ------------------------------------------------------

    static byte[] intermediate(Boolean ca) throws Exception {
        Spec spec = new Spec().subject("intermediate CA", intermediateKey);
        spec.ca = ca;
        spec.serial = new byte[] {0x11};
        return spec.build();
    }

    static byte[] leafUnderIntermediate() throws Exception {
        Spec spec = new Spec();
        spec.issuer = "intermediate CA";
        spec.signer = intermediateKey;
        return spec.build();
    }

    @Test
    void aLeafOfTheStoredCaAndAChainThroughAnIntermediateAreAccepted() throws Exception {
        assertEquals(-1, chain(new Spec().build()));
        assertTrue(clientAuth.expectsCertificateVerify());
        assertEquals(-1, chain(leafUnderIntermediate(), intermediate(true)));
        assertTrue(clientAuth.expectsCertificateVerify());
    }

    @Test
    void aChainOfThreeCertificatesIsAnUnsupportedCertificate() throws Exception {
        Spec third = new Spec().subject("root CA", rootKey);
        third.ca = true;
        assertEquals(Tls.ALERT_UNSUPPORTED_CERTIFICATE, chain(leafUnderIntermediate(), intermediate(true), third.build()));
        assertFalse(clientAuth.expectsCertificateVerify());
    }

    @Test
    void anIntermediateWithoutCaTrueIsABadCertificate() throws Exception {
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, chain(leafUnderIntermediate(), intermediate(null)), "no basicConstraints");
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, chain(leafUnderIntermediate(), intermediate(false)), "cA FALSE");
        assertFalse(clientAuth.expectsCertificateVerify());
    }

    @Test
    void aLeafNotSignedByTheIntermediateItNamesIsABadCertificate() throws Exception {
        Spec forged = new Spec();
        forged.issuer = "intermediate CA";
        forged.signer = leafKey; // signed by itself, naming the intermediate
        assertEquals(Tls.ALERT_BAD_CERTIFICATE, chain(forged.build(), intermediate(true)));
    }

    @Test
    void anotherCaOrAnotherKeyUnderTheStoredCasNameIsUnknownCa() throws Exception {
        Spec other = new Spec();
        other.issuer = "another CA";
        assertEquals(Tls.ALERT_UNKNOWN_CA, chain(other.build()));
        Spec impostor = new Spec();
        impostor.signer = intermediateKey; // names the stored CA, not signed by its key
        assertEquals(Tls.ALERT_UNKNOWN_CA, chain(impostor.build()));
    }

    @Test
    void aRevokedSerialInTheChainIsCertificateRevoked() throws Exception {
        byte[] list = {1, 0x11}; // the intermediate's serial
        persistent.clientCerts.setRevoked(list, (short) 0, (short) list.length);
        assertEquals(Tls.ALERT_CERTIFICATE_REVOKED, chain(leafUnderIntermediate(), intermediate(true)));
        assertEquals(-1, chain(new Spec().build()));
    }

    @Test
    void certificateListFramingErrorsAreDecodeErrorsAndAnEmptyListIsAHandshakeFailureWhenRequired() throws Exception {
        byte[] cert = new Spec().build();
        byte[] body = new byte[3 + 3 + cert.length];
        body[1] = (byte) ((3 + cert.length) >> 8);
        body[2] = (byte) (3 + cert.length);
        body[4] = (byte) ((cert.length + 1) >> 8); // one byte more than there is
        body[5] = (byte) (cert.length + 1);
        System.arraycopy(cert, 0, body, 6, cert.length);
        try {
            clientAuth.begin(identity);
            clientAuth.onCertificate(identity, body, (short) 0, (short) body.length);
            fail("accepted a certificate longer than its list");
        } catch (TlsAlert a) {
            assertEquals(Tls.ALERT_DECODE_ERROR, a.getReason());
        }
        assertEquals(Tls.ALERT_HANDSHAKE_FAILURE, chain());
    }

    @Test
    void garbageInPlaceOfACertificateIsABadCertificateForEveryLength() throws Exception {
        java.util.Random random = new java.util.Random(12);
        for (int n = 1; n < 300; n++) {
            byte[] g = new byte[n];
            random.nextBytes(g);
            g[0] = 0x30;
            int reason = parse(g);
            assertTrue(reason == Tls.ALERT_BAD_CERTIFICATE || reason == Tls.ALERT_UNSUPPORTED_CERTIFICATE, n + ": " + reason);
        }
    }

    private static int indexOf(byte[] haystack, byte[] needle) {
        outer:
        for (int i = 0; i <= haystack.length - needle.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (haystack[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        throw new IllegalArgumentException("not found");
    }
}
