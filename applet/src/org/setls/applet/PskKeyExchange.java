package org.setls.applet;

import javacard.framework.Util;
import javacard.security.RandomData;

/**
 * The pre-shared key's part of the handshake (RFC 4279 2, RFC 5489 2): the premaster secret
 * other_secret<0..2^16-1> || psk<0..2^16-1>, where other_secret is N zeros for a plain PSK suite
 * (TLS_PSK_WITH_AES_128_CCM_8, RFC 6655 / RFC 7925) and the ECDH shared secret for an ECDHE_PSK
 * suite (TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256). The key is decrypted from PskStore into the
 * handshake's scratch (RAM) and dies there with the premaster secret, within the
 * ClientKeyExchange's APDU; it never leaves the card.
 *
 * An identity the card does not know is treated as a wrong key (RFC 4279 2 allows it): a key of
 * random bytes takes its place and the handshake goes on, so the client's Finished fails to
 * authenticate under keys the client cannot share, with the same alert as for a wrong key
 * (bad_record_mac: the Finished record does not open). A client cannot tell which was wrong.
 */
final class PskKeyExchange {
    /** The largest premaster secret: 2 + KEY_MAX zeros + 2 + KEY_MAX (plain PSK). */
    static final short PREMASTER_MAX = (short) (2 + PskStore.KEY_MAX + 2 + PskStore.KEY_MAX); // 130
    /** Where the decrypted block goes, inside the premaster's room: its end. */
    private static final short BLOCK_AT = (short) (PREMASTER_MAX - PskStore.BLOCK);          // 66
    /** The stand-in key's length for an unknown identity. */
    private static final short UNKNOWN_KEY_SIZE = 32;

    private final PskStore store;
    private final RandomData random;
    private final OpCounters counters;

    /** Allocated once, at install. */
    PskKeyExchange(PskStore store, RandomData random, OpCounters counters) {
        this.store = store;
        this.random = random;
        this.counters = counters;
    }

    /** True for the suites whose key exchange uses a PSK. */
    static boolean isPsk(short suite) {
        return suite == Tls.TLS_PSK_WITH_AES_128_CCM_8 || suite == Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256;
    }

    /** The card holds at least one PSK (else no PSK suite is negotiated). */
    boolean hasKeys() {
        return store.count() > 0;
    }

    /**
     * Writes the premaster secret at out[at] (PREMASTER_MAX bytes of room, RAM) for the identity at
     * id[idOff] (idLen bytes). otherLength 0: a plain PSK suite (other_secret is N zeros); else the
     * ECDH secret of that length is already at out[at + 2]. Returns the premaster's length.
     */
    short premaster(byte[] id, short idOff, short idLen, byte[] out, short at, short otherLength) {
        short block = (short) (at + BLOCK_AT);
        short n = store.load(id, idOff, idLen, out, block);
        counters.count(OpCounters.AES_BLOCKS, (short) (PskStore.BLOCK / 16));
        if (n < 0) {
            n = UNKNOWN_KEY_SIZE; // unknown identity: as if the key were wrong (RFC 4279 2)
            random.generateData(out, (short) (block + 1), n);
        }
        short other = otherLength;
        if (other == 0) {
            other = n;
            Util.arrayFillNonAtomic(out, (short) (at + 2), n, (byte) 0);
        }
        Util.setShort(out, at, other);
        short w = (short) (at + 2 + other);
        w = Util.setShort(out, w, n);
        // Same array: copied as through a temporary array, so the overlap is harmless.
        w = Util.arrayCopyNonAtomic(out, (short) (block + 1), out, w, n);
        Util.arrayFillNonAtomic(out, w, (short) (at + PREMASTER_MAX - w), (byte) 0);
        return (short) (w - at);
    }
}
