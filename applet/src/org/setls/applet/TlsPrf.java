package org.setls.applet;

import javacard.framework.JCSystem;
import javacard.framework.Util;

/**
 * The TLS 1.2 PRF with P_SHA256 (RFC 5246 section 5):
 * P_hash(secret, seed) = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...,
 * A(0) = seed, A(i) = HMAC(secret, A(i-1)), and seed = label + seed.
 * RAM: SCRATCH_SIZE bytes, CLEAR_ON_DESELECT: A(i) and one output block.
 */
final class TlsPrf {
    private static final short A = 0;
    private static final short OUTPUT = HmacSha256.HASH_SIZE;
    private static final short SCRATCH_SIZE = 2 * HmacSha256.HASH_SIZE;

    private final HmacSha256 hmac;
    private final byte[] scratch;
    private OpCounters counters;

    /** Allocated once, at install. */
    TlsPrf(HmacSha256 hmac) {
        this.hmac = hmac;
        scratch = JCSystem.makeTransientByteArray(SCRATCH_SIZE, JCSystem.CLEAR_ON_DESELECT);
    }

    /** Counts the HMACs (and their SHA-256 blocks) this PRF computes. */
    void setCounters(OpCounters counters) {
        this.counters = counters;
    }

    /** out = PRF(secret, label, seed1 + seed2)[0..outLen); seed2 may be null. */
    void derive(byte[] secret, short sOff, short sLen, byte[] label, short lOff, short lLen,
                byte[] seed1, short s1Off, short s1Len, byte[] seed2, short s2Off, short s2Len,
                byte[] out, short outOff, short outLen) {
        if (seed2 == null) {
            seed2 = seed1;
            s2Off = s1Off;
            s2Len = 0;
        }
        short seedLen = (short) (lLen + s1Len + s2Len);
        // A(1) = HMAC(secret, label + seed)
        hmac.init(secret, sOff, sLen);
        hmac.update(label, lOff, lLen);
        hmac.update(seed1, s1Off, s1Len);
        hmac.doFinal(seed2, s2Off, s2Len, scratch, A);
        count(seedLen);
        while (outLen > 0) {
            hmac.restart();
            hmac.update(scratch, A, HmacSha256.HASH_SIZE);
            hmac.update(label, lOff, lLen);
            hmac.update(seed1, s1Off, s1Len);
            hmac.doFinal(seed2, s2Off, s2Len, scratch, OUTPUT);
            count((short) (HmacSha256.HASH_SIZE + seedLen));
            short n = outLen < HmacSha256.HASH_SIZE ? outLen : HmacSha256.HASH_SIZE;
            Util.arrayCopyNonAtomic(scratch, OUTPUT, out, outOff, n);
            outOff += n;
            outLen -= n;
            if (outLen > 0) {
                hmac.restart();
                hmac.doFinal(scratch, A, HmacSha256.HASH_SIZE, scratch, A);
                count(HmacSha256.HASH_SIZE);
            }
        }
        Util.arrayFillNonAtomic(scratch, (short) 0, SCRATCH_SIZE, (byte) 0);
    }

    /** One HMAC over a message of {@code len} bytes: inner hash of 64 + len, outer of 64 + 32. */
    private void count(short len) {
        if (counters != null) {
            counters.count(OpCounters.HMAC, (short) 1);
            counters.countDigest((short) (HmacSha256.BLOCK_SIZE + len));
            counters.countDigest((short) (HmacSha256.BLOCK_SIZE + HmacSha256.HASH_SIZE));
        }
    }
}
