package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.OwnerPIN;
import javacard.framework.Util;
import javacard.security.ECPrivateKey;
import javacard.security.ECPublicKey;
import javacard.security.KeyPair;

/**
 * One identity of the card (persistent): its P-256 key pair, generated in the card, whose private
 * half no command can read; the certificate chain it presents; its PIN; its policy; the cipher
 * suites it offers, in the server's order of preference.
 */
final class Identity {
    static final short NAME_MAX = 32;
    /** certificate_list of the TLS Certificate message (RFC 5246 7.4.2), 3-byte lengths included. */
    static final short CHAIN_MAX = 3072;
    static final byte PIN_TRIES = 3;
    static final byte PIN_MIN = 4;
    static final byte PIN_MAX = 16;
    static final short SUITES_MAX = 4;

    /** Policy bit: the session keys may be exported to the host after the handshake. */
    static final byte POLICY_EXPORT_KEYS = 0x01;

    final byte[] name = new byte[NAME_MAX];
    byte nameLength;
    final byte[] chain = new byte[CHAIN_MAX];
    short chainLength;
    final OwnerPIN pin = new OwnerPIN(PIN_TRIES, PIN_MAX);
    boolean pinSet;
    boolean keyReady;
    byte policy;
    final short[] suites = new short[SUITES_MAX];
    byte suiteCount;
    final KeyPair keyPair;

    /** Allocated once, at install; the key has its domain parameters before any generation. */
    Identity() {
        keyPair = P256.newKeyPair();
        setDefaultSuites();
    }

    ECPrivateKey privateKey() {
        return (ECPrivateKey) keyPair.getPrivate();
    }

    ECPublicKey publicKey() {
        return (ECPublicKey) keyPair.getPublic();
    }

    boolean matches(byte[] buf, short off, short len) {
        return nameLength != 0 && len == nameLength
                && Util.arrayCompare(buf, off, name, (short) 0, len) == 0;
    }

    /** Ready to serve: key generated and a certificate chain loaded. */
    boolean isPersonalised() {
        return keyReady && chainLength > 0;
    }

    /** Personalisation is open until a PIN is set, then needs the PIN verified in this session. */
    boolean mayPersonalise() {
        return !pinSet || pin.isValidated();
    }

    boolean offers(short suite) {
        for (short i = 0; i < suiteCount; i++) {
            if (suites[i] == suite) {
                return true;
            }
        }
        return false;
    }

    void setDefaultSuites() {
        JCSystem.beginTransaction();
        suites[0] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        suites[1] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8;
        suites[2] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM;
        suites[3] = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256;
        suiteCount = 4;
        JCSystem.commitTransaction();
    }

    /** Regenerates the key pair; the old certificate chain no longer matches and is dropped. */
    void generateKey(EcKeyGenerator generator, byte[] scratch, short off) {
        JCSystem.beginTransaction();
        keyReady = false;
        chainLength = 0;
        JCSystem.commitTransaction();
        generator.generate(keyPair, scratch, off);
        keyReady = true;
    }
}
