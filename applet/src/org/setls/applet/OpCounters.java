package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.Util;

/**
 * Diagnostic counters of the card's primitive operations, read by GET COUNTERS (docs/apdu.md)
 * so the benchmark multiplies exact counts by per-operation costs of real cards. Counters
 * saturate at 0x7FFF. RAM: Transients.OP_COUNTERS, CLEAR_ON_RESET (they survive reselection, so
 * the host can read them after a handshake and between card sessions' commands).
 *
 * GET COUNTERS answers COUNT counters in index order. Index 1 counts ECDSA verifications (the
 * operator's signatures; client signatures later): it read 0 before the operator session existed.
 */
final class OpCounters {
    static final short ECDSA_SIGN = 0;
    /** ECDSA verifications: the operator's signature of a card challenge (OPERATOR AUTHENTICATE). */
    static final short ECDSA_VERIFY = 1;
    static final short ECDH = 2;
    static final short EC_KEYGEN = 3;
    /** SHA-256 compression-function calls (64-byte blocks, padding included). */
    static final short SHA256_BLOCKS = 4;
    /** AES-128 block encryptions/decryptions by the card's engine (ECB or CBC). */
    static final short AES_BLOCKS = 5;
    /** GF(2^128) multiplications done in software for GCM. */
    static final short GHASH_BLOCKS = 6;
    static final short RANDOM_BYTES = 7;
    static final short HMAC = 8;
    static final short APDUS = 9;
    /** Bytes the applet wrote to persistent memory (EEPROM / flash): the I/O buffer, identities, PIN tries. */
    static final short EEPROM_BYTES = 10;
    static final short COUNT = 11;

    private static final short MAX = 0x7FFF;
    private static final short BASE = Transients.OP_COUNTERS;
    private final short[] counters;

    /** Allocated once, at install; the counters are the arena's. */
    OpCounters(Transients ram) {
        counters = ram.counters;
    }

    void count(short which, short n) {
        short i = (short) (BASE + which);
        short v = counters[i];
        counters[i] = (short) (n > (short) (MAX - v) ? MAX : (short) (v + n));
    }

    /** Counts the SHA-256 blocks of hashing {@code bytes} bytes in total (FIPS 180-4 padding). */
    void countDigest(short bytes) {
        // 1 byte 0x80 and 8 bytes of length, rounded up to 64-byte blocks.
        count(SHA256_BLOCKS, (short) ((short) ((short) (bytes >> 6) + 1) + (short) ((short) (bytes & 63) > 55 ? 1 : 0)));
    }

    /** Counts the blocks of a 16-byte-block cipher over {@code bytes} bytes. */
    void countBlocks(short which, short bytes) {
        count(which, (short) ((short) (bytes >> 4) + (short) ((bytes & 15) != 0 ? 1 : 0)));
    }

    void reset() {
        for (short i = 0; i < COUNT; i++) {
            counters[(short) (BASE + i)] = 0;
        }
    }

    /** GET COUNTERS: the counters, 2 bytes each, in index order; P1 = COUNTERS_RESET resets them. */
    void send(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        boolean reset = buf[ISO7816.OFFSET_P1] == Constants.COUNTERS_RESET;
        short n = 0;
        for (short i = 0; i < COUNT; i++) {
            n = Util.setShort(buf, n, counters[(short) (BASE + i)]);
        }
        if (reset) {
            reset();
        }
        apdu.setOutgoingAndSend((short) 0, n);
    }
}
