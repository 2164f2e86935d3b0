package org.setls.applet;

import javacard.security.CryptoException;
import javacard.security.ECKey;
import javacard.security.ECPrivateKey;
import javacard.security.ECPublicKey;
import javacard.security.KeyBuilder;
import javacard.security.KeyPair;

/**
 * The curve secp256r1 (SEC 2 section 2.4.2, FIPS 186-4 D.1.2.3). Real cards ship EC keys without
 * domain parameters (jcardsim preloads them), so every key the applet builds gets them set here
 * (Quirks: CURVE_PARAMETERS).
 */
final class P256 {
    static final short COORDINATE_SIZE = 32;
    /** Uncompressed point: 0x04 || X || Y (SEC 1 section 2.3.3). */
    static final short POINT_SIZE = 65;
    static final byte POINT_UNCOMPRESSED = 0x04;

    static final byte[] FIELD_P = {
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF,
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF};
    static final byte[] A = {
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF,
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFC};
    static final byte[] B = {
        0x5A, (byte) 0xC6, 0x35, (byte) 0xD8, (byte) 0xAA, 0x3A, (byte) 0x93, (byte) 0xE7,
        (byte) 0xB3, (byte) 0xEB, (byte) 0xBD, 0x55, 0x76, (byte) 0x98, (byte) 0x86, (byte) 0xBC,
        0x65, 0x1D, 0x06, (byte) 0xB0, (byte) 0xCC, 0x53, (byte) 0xB0, (byte) 0xF6,
        0x3B, (byte) 0xCE, 0x3C, 0x3E, 0x27, (byte) 0xD2, 0x60, 0x4B};
    static final byte[] G = {
        0x04,
        0x6B, 0x17, (byte) 0xD1, (byte) 0xF2, (byte) 0xE1, 0x2C, 0x42, 0x47,
        (byte) 0xF8, (byte) 0xBC, (byte) 0xE6, (byte) 0xE5, 0x63, (byte) 0xA4, 0x40, (byte) 0xF2,
        0x77, 0x03, 0x7D, (byte) 0x81, 0x2D, (byte) 0xEB, 0x33, (byte) 0xA0,
        (byte) 0xF4, (byte) 0xA1, 0x39, 0x45, (byte) 0xD8, (byte) 0x98, (byte) 0xC2, (byte) 0x96,
        0x4F, (byte) 0xE3, 0x42, (byte) 0xE2, (byte) 0xFE, 0x1A, 0x7F, (byte) 0x9B,
        (byte) 0x8E, (byte) 0xE7, (byte) 0xEB, 0x4A, 0x7C, 0x0F, (byte) 0x9E, 0x16,
        0x2B, (byte) 0xCE, 0x33, 0x57, 0x6B, 0x31, 0x5E, (byte) 0xCE,
        (byte) 0xCB, (byte) 0xB6, 0x40, 0x68, 0x37, (byte) 0xBF, 0x51, (byte) 0xF5};
    /** The order n of G. */
    static final byte[] R = {
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0x00, 0x00, 0x00, 0x00,
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF,
        (byte) 0xBC, (byte) 0xE6, (byte) 0xFA, (byte) 0xAD, (byte) 0xA7, 0x17, (byte) 0x9E, (byte) 0x84,
        (byte) 0xF3, (byte) 0xB9, (byte) 0xCA, (byte) 0xC2, (byte) 0xFC, 0x63, 0x25, 0x51};
    static final short COFACTOR = 1;
    /**
     * The DER SubjectPublicKeyInfo of a P-256 key (RFC 5480) up to the point: SEQUENCE, the
     * AlgorithmIdentifier id-ecPublicKey with the named curve prime256v1, then the BIT STRING
     * header of the 65-byte uncompressed point. The whole SPKI is these 26 bytes and the point.
     */
    static final byte[] SPKI_PREFIX = {
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE, 0x3D, 0x02, 0x01,
        0x06, 0x08, 0x2A, (byte) 0x86, 0x48, (byte) 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    static final short SPKI_SIZE = 91;

    private P256() {
    }

    /** A key pair of P-256 keys with their domain parameters set. Call at install only. */
    static KeyPair newKeyPair() {
        ECPrivateKey priv = (ECPrivateKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PRIVATE,
                KeyBuilder.LENGTH_EC_FP_256, false);
        ECPublicKey pub = (ECPublicKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PUBLIC,
                KeyBuilder.LENGTH_EC_FP_256, false);
        KeyPair pair = new KeyPair(pub, priv);
        setDomainParameters(pair);
        return pair;
    }

    /**
     * The ephemeral ECDHE key pair: its private half is a transient key
     * ({@code TYPE_EC_FP_PRIVATE_TRANSIENT_DESELECT}, in RAM), so the scalar set into it for one
     * APDU never reaches EEPROM; a card without transient EC keys gets a persistent one, set and
     * cleared within the APDU. The public half is never written: the point goes straight to the
     * ServerKeyExchange. Call at install only.
     */
    static KeyPair newEphemeralKeyPair() {
        ECPrivateKey priv;
        try {
            priv = (ECPrivateKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PRIVATE_TRANSIENT_DESELECT,
                    KeyBuilder.LENGTH_EC_FP_256, false);
        } catch (CryptoException e) {
            priv = (ECPrivateKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PRIVATE,
                    KeyBuilder.LENGTH_EC_FP_256, false);
        }
        ECPublicKey pub = (ECPublicKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PUBLIC,
                KeyBuilder.LENGTH_EC_FP_256, false);
        KeyPair pair = new KeyPair(pub, priv);
        setDomainParameters(pair);
        return pair;
    }

    static void setDomainParameters(KeyPair pair) {
        setDomainParameters((ECPrivateKey) pair.getPrivate());
        setDomainParameters((ECPublicKey) pair.getPublic());
    }

    static void setDomainParameters(ECKey key) {
        key.setFieldFP(FIELD_P, (short) 0, COORDINATE_SIZE);
        key.setA(A, (short) 0, COORDINATE_SIZE);
        key.setB(B, (short) 0, COORDINATE_SIZE);
        key.setG(G, (short) 0, POINT_SIZE);
        key.setR(R, (short) 0, COORDINATE_SIZE);
        key.setK(COFACTOR);
    }

    /**
     * The checks of a peer's public point that need no field arithmetic (SEC 1 section 3.2.2.1
     * steps 1-2): uncompressed form, both coordinates in [0, p-1], not all zero. PointCheck then
     * checks the curve equation (step 3).
     */
    static boolean isPlausiblePoint(byte[] buf, short off, short len) {
        if (len != POINT_SIZE || buf[off] != POINT_UNCOMPRESSED) {
            return false;
        }
        short x = (short) (off + 1);
        short y = (short) (x + COORDINATE_SIZE);
        return lessThanP(buf, x) && lessThanP(buf, y) && !isZero(buf, x, (short) (2 * COORDINATE_SIZE));
    }

    /** True if the 32-byte big-endian number at off is below the order n. */
    static boolean isBelowOrder(byte[] buf, short off) {
        return unsignedLess(buf, off, R);
    }

    private static boolean lessThanP(byte[] buf, short off) {
        return unsignedLess(buf, off, FIELD_P);
    }

    /** Big-endian unsigned comparison (Util.arrayCompare compares signed bytes). */
    private static boolean unsignedLess(byte[] buf, short off, byte[] bound) {
        for (short i = 0; i < COORDINATE_SIZE; i++) {
            short a = (short) (buf[(short) (off + i)] & 0xFF);
            short b = (short) (bound[i] & 0xFF);
            if (a != b) {
                return a < b;
            }
        }
        return false;
    }

    private static boolean isZero(byte[] buf, short off, short len) {
        byte acc = 0;
        for (short i = 0; i < len; i++) {
            acc |= buf[(short) (off + i)];
        }
        return acc == 0;
    }
}
