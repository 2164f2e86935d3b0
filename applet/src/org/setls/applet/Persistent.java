package org.setls.applet;

import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.OwnerPIN;
import javacard.security.ECPublicKey;
import javacard.security.KeyBuilder;

/**
 * The applet's persistent state (EEPROM / flash), allocated once at install: the I/O buffer, the
 * identities, and the card's own credentials: whether INITIALIZE ran, the PUK, the operator's
 * public key, the PSKs. Each {@link Identity} is a persistent record that only its own methods change,
 * in transactions where more than one field moves. The platform's crypto objects (digests,
 * ciphers, the ephemeral key pair) are built by their users' constructors, also at install; the
 * budget is in docs/resources.md.
 */
final class Persistent {
    /**
     * Largest TLS message the card takes or gives: a whole protected record of 2^14 + 2048 bytes
     * with its header (UNPROTECT RECORD; the last record of the first message of a client's flight
     * 3), plus the ClientKeyExchange and ChangeCipherSpec records before it in that message.
     */
    static final short MESSAGE_CAPACITY = Tls.MAX_CIPHERTEXT + Tls.RECORD_HEADER_SIZE + TlsServer.FLIGHT3_PREFIX_MAX;
    /**
     * The I/O buffer: EAP-TLS messages are reassembled here and answers written in place.
     * Persistent because no card has 18 KB of RAM; it holds no secret that outlives a message,
     * and it is written without transactions since it is scratch.
     */
    static final short IO_SIZE = EapTls.MSG_OFF + MESSAGE_CAPACITY;

    static final byte PUK_TRIES = 5;

    final byte[] io;
    private final Identity[] identities;
    /** Set once by INITIALIZE (a single-field write): the card left its transport state. */
    private boolean initialised;
    private final OwnerPIN puk;
    private final ECPublicKey operatorKey;
    final PskStore psks;
    /** The revoked client certificate serials and the sessions' authenticated clients. */
    final ClientCertStore clientCerts;

    /** Allocated once, at install. */
    Persistent(PskStore psks) {
        io = new byte[IO_SIZE];
        identities = new Identity[Constants.MAX_IDENTITIES];
        for (byte i = 0; i < Constants.MAX_IDENTITIES; i++) {
            identities[i] = new Identity();
        }
        puk = new OwnerPIN(PUK_TRIES, Identity.PIN_MAX);
        operatorKey = (ECPublicKey) KeyBuilder.buildKey(KeyBuilder.TYPE_EC_FP_PUBLIC, KeyBuilder.LENGTH_EC_FP_256, false);
        P256.setDomainParameters(operatorKey);
        this.psks = psks;
        clientCerts = new ClientCertStore();
    }

    boolean isInitialised() {
        return initialised;
    }

    OwnerPIN puk() {
        return puk;
    }

    ECPublicKey operatorKey() {
        return operatorKey;
    }

    /**
     * INITIALIZE: the PIN of every identity, the PUK and the operator's public point (checked by
     * the caller), then the flag, last: a tear before it leaves a card that can be initialised again.
     */
    void initialise(byte[] buf, short pinOff, short pinLen, short pukOff, short pukLen, short pointOff) {
        for (byte i = 0; i < Constants.MAX_IDENTITIES; i++) {
            identities[i].setPin(buf, pinOff, pinLen);
        }
        setPuk(buf, pukOff, pukLen);
        P256.setDomainParameters(operatorKey);
        operatorKey.setW(buf, pointOff, P256.POINT_SIZE);
        initialised = true;
    }

    /** Sets the PUK and resets its tries. */
    void setPuk(byte[] buf, short off, short len) {
        Identity.checkPinLength(len);
        JCSystem.beginTransaction();
        puk.update(buf, off, (byte) len);
        JCSystem.commitTransaction();
    }

    /** The identity in slot {@code p2} (P2 of the personalisation commands); 6A86 if none. */
    Identity slot(byte p2) {
        if (p2 < 0 || p2 >= Constants.MAX_IDENTITIES) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        return identities[p2];
    }

    /** The identity with that name, or null. */
    Identity find(byte[] name, short off, short len) {
        for (byte i = 0; i < Constants.MAX_IDENTITIES; i++) {
            if (identities[i].matches(name, off, len)) {
                return identities[i];
            }
        }
        return null;
    }
}
