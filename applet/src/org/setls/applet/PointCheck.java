package org.setls.applet;

/**
 * Checks that a peer's point lies on P-256: y^2 = x^3 - 3x + b (mod p) (SEC 1 3.2.2.1 step 3).
 * The card's ECDH may or may not validate points (jcardsim throws, some cards compute on another
 * curve); the check here makes the answer the same everywhere: illegal_parameter
 * (Quirks: INVALID_POINT).
 *
 * Arithmetic in bytecode without int: numbers are little-endian byte limbs held in shorts, so a
 * limb product (< 2^16) is split into bytes before it is added, and column sums stay below 2^15.
 * Reduction uses 2^256 = 2^224 - 2^192 - 2^96 + 1 (mod p): the high half folds back with shifts
 * of whole bytes (28, 24, 12, 0), a few times, then p is subtracted while the value is >= p.
 * RAM: the arena's Transients.CURVE, WORK_SIZE = ACC_SIZE + 3 * LIMBS shorts of one-APDU scratch.
 */
final class PointCheck {
    private static final short LIMBS = 32;
    private static final short ACC_SIZE = 66;      // a 512-bit product and two limbs of headroom
    private static final short FOLDS = 16;          // each fold removes ~32 bits of the high part
    private static final short SHIFT_224 = 28;
    private static final short SHIFT_192 = 24;
    private static final short SHIFT_96 = 12;

    // Layout: shorts of the arena from Transients.CURVE; A, B, T are numbers of LIMBS limbs.
    private static final short ACC = Transients.CURVE;
    private static final short A = (short) (ACC + ACC_SIZE);
    private static final short B = (short) (A + LIMBS);
    private static final short T = (short) (B + LIMBS);
    static final short WORK_SIZE = (short) (ACC_SIZE + 3 * LIMBS);

    private final short[] w;

    /** Allocated once, at install; the working memory is the arena's. */
    PointCheck(Transients ram) {
        w = ram.shorts;
    }

    /** The uncompressed point at buf[off] (0x04 || X || Y, coordinates already below p). */
    boolean isOnCurve(byte[] buf, short off) {
        short[] w = this.w;
        short x = (short) (off + 1);
        short y = (short) (x + P256.COORDINATE_SIZE);
        // right side: x^3 - 3x + b
        load(buf, x, A);
        multiply(A, A, T);              // t = x^2
        multiply(T, A, T);              // t = x^3
        load(P256.B, (short) 0, B);
        clearAcc();
        for (short i = 0; i < LIMBS; i++) {
            w[(short) (ACC + i)] = (short) (w[(short) (T + i)] + w[(short) (B + i)] - (short) (3 * w[(short) (A + i)]));
        }
        reduce();
        store(T);                       // t = x^3 - 3x + b mod p
        // left side: y^2
        load(buf, y, A);
        multiply(A, A, B);              // b = y^2
        short diff = 0;
        for (short i = 0; i < LIMBS; i++) {
            diff |= (short) (w[(short) (B + i)] ^ w[(short) (T + i)]);
        }
        return diff == 0;
    }

    /** Big-endian 32 bytes into little-endian limbs at {@code limbs}. */
    private void load(byte[] src, short off, short limbs) {
        for (short i = 0; i < LIMBS; i++) {
            w[(short) (limbs + i)] = (short) (src[(short) (off + LIMBS - 1 - i)] & 0xFF);
        }
    }

    private void store(short limbs) {
        for (short i = 0; i < LIMBS; i++) {
            w[(short) (limbs + i)] = w[(short) (ACC + i)];
        }
    }

    private void clearAcc() {
        for (short i = 0; i < ACC_SIZE; i++) {
            w[(short) (ACC + i)] = 0;
        }
    }

    /** out = x * y mod p (out may be x or y); x, y and out are offsets of numbers. */
    private void multiply(short x, short y, short out) {
        short[] w = this.w; // a local: cheaper than a field access on a card's interpreter
        clearAcc();
        for (short i = 0; i < LIMBS; i++) {
            short xi = w[(short) (x + i)];
            for (short j = 0; j < LIMBS; j++) {
                short product = (short) (xi * w[(short) (y + j)]);  // < 2^16: as 16 bits, possibly negative
                short k = (short) (ACC + (short) (i + j));
                w[k] += (short) (product & 0xFF);
                w[(short) (k + 1)] += (short) ((product >> 8) & 0xFF);
            }
        }
        reduce();
        store(out);
    }

    /** Brings acc (signed limbs, any value with |limb| < 2^14) to its canonical residue mod p. */
    private void reduce() {
        if (normalize() < 0) {
            // Negative: add p until it is not (a few times at most for what callers build).
            for (short n = 0; n < 8 && normalizeAddP() < 0; n++) {
            }
        }
        for (short n = 0; n < FOLDS && !highIsZero(); n++) {
            fold();
            normalize();
        }
        while (!lessThanP()) {
            subtractP();
        }
    }

    /** Propagates carries (floor division for negative limbs); returns the carry out of the top. */
    private short normalize() {
        short[] w = this.w;
        short carry = 0;
        for (short k = ACC; k < (short) (ACC + ACC_SIZE); k++) {
            short v = (short) (w[k] + carry);
            w[k] = (short) (v & 0xFF);
            carry = (short) (v >> 8);
        }
        return carry;
    }

    private short normalizeAddP() {
        for (short i = 0; i < LIMBS; i++) {
            w[(short) (ACC + i)] += (short) (P256.FIELD_P[(short) (LIMBS - 1 - i)] & 0xFF);
        }
        // The negative top was dropped by normalize(): put the borrow back as the last limb.
        w[(short) (ACC + ACC_SIZE - 1)] = (short) -1;
        short carry = normalize();
        return carry;
    }

    private boolean highIsZero() {
        for (short k = (short) (ACC + LIMBS); k < (short) (ACC + ACC_SIZE); k++) {
            if (w[k] != 0) {
                return false;
            }
        }
        return true;
    }

    /** value = L + H * (2^224 - 2^192 - 2^96 + 1), H the limbs from 32 up. */
    private void fold() {
        short[] w = this.w;
        short highLimbs = (short) (ACC_SIZE - LIMBS);
        for (short i = 0; i < highLimbs; i++) {
            short high = (short) (ACC + LIMBS + i);
            short h = w[high];
            w[high] = 0;
            if (h == 0) {
                continue;
            }
            short k = (short) (ACC + i);
            w[k] += h;
            w[(short) (k + SHIFT_96)] -= h;
            w[(short) (k + SHIFT_192)] -= h;
            w[(short) (k + SHIFT_224)] += h;
        }
    }

    private boolean lessThanP() {
        for (short i = (short) (LIMBS - 1); i >= 0; i--) {
            short p = (short) (P256.FIELD_P[(short) (LIMBS - 1 - i)] & 0xFF);
            short limb = w[(short) (ACC + i)];
            if (limb != p) {
                return limb < p;
            }
        }
        return false; // equal to p
    }

    private void subtractP() {
        for (short i = 0; i < LIMBS; i++) {
            w[(short) (ACC + i)] -= (short) (P256.FIELD_P[(short) (LIMBS - 1 - i)] & 0xFF);
        }
        normalize();
    }
}
