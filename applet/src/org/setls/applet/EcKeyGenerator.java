package org.setls.applet;

import javacard.framework.Util;
import javacard.security.CryptoException;
import javacard.security.ECPrivateKey;
import javacard.security.ECPublicKey;
import javacard.security.KeyAgreement;
import javacard.security.KeyPair;
import javacard.security.RandomData;

/**
 * Generates P-256 key pairs from the card's RandomData: the private scalar is drawn from it and
 * the public point computed as S * G with ECDH ALG_EC_SVDP_DH_PLAIN_XY (Java Card 3.0.5).
 *
 * Why not KeyPair.genKeyPair() (Quirks: KEYGEN): jcardsim's key generation draws from an unseeded
 * SHA-1 generator, so every simulated card made the same keys in the same order, and its ECDH
 * computes a wrong secret for a scalar with a leading zero byte (about 1 handshake in 256 failed).
 * Drawing S here makes the keys as good as RandomData (seeded on jcardsim with
 * randomdata.secure=1, the card's TRNG on real cards), and scalars with a leading zero byte are
 * skipped (a 1/256 narrowing of the key space, harmless). Cards without PLAIN_XY (Java Card 3.0.4)
 * fall back to genKeyPair() (Quirks: API_LEVEL).
 */
final class EcKeyGenerator {
    private final RandomData random;
    private final KeyAgreement multiply;

    /** Allocated once, at install. */
    EcKeyGenerator(RandomData random) {
        this.random = random;
        KeyAgreement xy = null;
        try {
            // A 3.0.5 constant: inlined at compile time, refused at run time by a 3.0.4 card.
            xy = KeyAgreement.getInstance(KeyAgreement.ALG_EC_SVDP_DH_PLAIN_XY, false);
        } catch (CryptoException e) {
            xy = null; // a Java Card 3.0.4 card: genKeyPair() it is
        }
        multiply = xy;
    }

    /**
     * An ephemeral key: the private scalar at s[sOff] (P256.COORDINATE_SIZE bytes, the caller's
     * RAM), the public point at w[wOff]; returns the point's length. The pair's private key is
     * cleared before this returns, and the public key is not written (no EEPROM) unless the card
     * lacks PLAIN_XY (the genKeyPair() fallback).
     */
    short generateEphemeral(KeyPair pair, byte[] s, short sOff, byte[] w, short wOff) {
        ECPrivateKey priv = (ECPrivateKey) pair.getPrivate();
        P256.setDomainParameters(priv); // Quirks: CURVE_PARAMETERS
        short len;
        if (multiply == null || !Quirks.KEYS_FROM_RANDOM_DATA) {
            P256.setDomainParameters((ECPublicKey) pair.getPublic());
            do {
                pair.genKeyPair();
            } while (priv.getS(s, sOff) != P256.COORDINATE_SIZE);
            len = ((ECPublicKey) pair.getPublic()).getW(w, wOff);
        } else {
            do {
                random.generateData(s, sOff, P256.COORDINATE_SIZE);
            } while (s[sOff] == 0 || !P256.isBelowOrder(s, sOff));
            priv.setS(s, sOff, P256.COORDINATE_SIZE);
            multiply.init(priv);
            len = multiply.generateSecret(P256.G, (short) 0, P256.POINT_SIZE, w, wOff);
        }
        priv.clearKey();
        return len;
    }

    /** New key pair; {@code scratch} needs P256.POINT_SIZE bytes at {@code off} and is wiped. */
    void generate(KeyPair pair, byte[] scratch, short off) {
        P256.setDomainParameters(pair); // clearKey() drops them on some platforms (Quirks: CURVE_PARAMETERS)
        ECPrivateKey priv = (ECPrivateKey) pair.getPrivate();
        if (multiply == null || !Quirks.KEYS_FROM_RANDOM_DATA) {
            do {
                pair.genKeyPair();
            } while (priv.getS(scratch, off) != P256.COORDINATE_SIZE);
        } else {
            do {
                random.generateData(scratch, off, P256.COORDINATE_SIZE);
            } while (scratch[off] == 0 || !P256.isBelowOrder(scratch, off));
            priv.setS(scratch, off, P256.COORDINATE_SIZE);
            multiply.init(priv);
            short len = multiply.generateSecret(P256.G, (short) 0, P256.POINT_SIZE, scratch, off);
            ((ECPublicKey) pair.getPublic()).setW(scratch, off, len);
        }
        Util.arrayFillNonAtomic(scratch, off, P256.POINT_SIZE, (byte) 0);
    }
}
