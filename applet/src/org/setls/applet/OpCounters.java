package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;

/**
 * Diagnostic counters of the card's primitive operations, read by GET COUNTERS (docs/apdu.md)
 * so the benchmark multiplies exact counts by per-operation costs of real cards.
 * Counters saturate at 0x7FFF. RAM: COUNT shorts, CLEAR_ON_RESET (they survive reselection,
 * so the host can read them after a handshake and between card sessions' commands).
 */
final class OpCounters {
    static final short ECDSA_SIGN = 0;
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
    static final short COUNT = 10;

    private static final short MAX = 0x7FFF;
    private final short[] counters;

    /** Allocated once, at install. */
    OpCounters() {
        counters = JCSystem.makeTransientShortArray(COUNT, JCSystem.CLEAR_ON_RESET);
    }

    void count(short which, short n) {
        short v = counters[which];
        counters[which] = (short) (n > (short) (MAX - v) ? MAX : (short) (v + n));
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
            counters[i] = 0;
        }
    }

    /** Writes the counters, 2 bytes each, in index order; returns the offset after them. */
    short write(byte[] out, short off) {
        for (short i = 0; i < COUNT; i++) {
            off = Util.setShort(out, off, counters[i]);
        }
        return off;
    }
}
