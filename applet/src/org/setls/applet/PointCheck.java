package org.setls.applet;

import javacard.framework.JCSystem;

/**
 * Checks that a peer's point lies on P-256: y^2 = x^3 - 3x + b (mod p) (SEC 1 3.2.2.1 step 3).
 * The card's ECDH may or may not validate points (jcardsim throws, some cards compute on another
 * curve); the check here makes the answer the same everywhere: illegal_parameter.
 *
 * Arithmetic in bytecode without int: numbers are little-endian byte limbs held in shorts, so a
 * limb product (< 2^16) is split into bytes before it is added, and column sums stay below 2^15.
 * Reduction uses 2^256 = 2^224 - 2^192 - 2^96 + 1 (mod p): the high half folds back with shifts
 * of whole bytes (28, 24, 12, 0), a few times, then p is subtracted while the value is >= p.
 * RAM: ACC_SIZE + 3 * LIMBS shorts, CLEAR_ON_DESELECT.
 */
final class PointCheck {
    private static final short LIMBS = 32;
    private static final short ACC_SIZE = 66;      // a 512-bit product and two limbs of headroom
    private static final short FOLDS = 16;          // each fold removes ~32 bits of the high part
    private static final short SHIFT_224 = 28;
    private static final short SHIFT_192 = 24;
    private static final short SHIFT_96 = 12;

    private final short[] acc;
    private final short[] a;
    private final short[] b;
    private final short[] t;

    /** Allocated once, at install. */
    PointCheck() {
        acc = JCSystem.makeTransientShortArray(ACC_SIZE, JCSystem.CLEAR_ON_DESELECT);
        a = JCSystem.makeTransientShortArray(LIMBS, JCSystem.CLEAR_ON_DESELECT);
        b = JCSystem.makeTransientShortArray(LIMBS, JCSystem.CLEAR_ON_DESELECT);
        t = JCSystem.makeTransientShortArray(LIMBS, JCSystem.CLEAR_ON_DESELECT);
    }

    /** The uncompressed point at buf[off] (0x04 || X || Y, coordinates already below p). */
    boolean isOnCurve(byte[] buf, short off) {
        short x = (short) (off + 1);
        short y = (short) (x + P256.COORDINATE_SIZE);
        // right side: x^3 - 3x + b
        load(buf, x, a);
        multiply(a, a, t);              // t = x^2
        multiply(t, a, t);              // t = x^3
        load(P256.B, (short) 0, b);
        clearAcc();
        for (short i = 0; i < LIMBS; i++) {
            acc[i] = (short) (t[i] + b[i] - (short) (3 * a[i]));
        }
        reduce();
        store(t);                       // t = x^3 - 3x + b mod p
        // left side: y^2
        load(buf, y, a);
        multiply(a, a, b);              // b = y^2
        short diff = 0;
        for (short i = 0; i < LIMBS; i++) {
            diff |= (short) (b[i] ^ t[i]);
        }
        return diff == 0;
    }

    /** Big-endian 32 bytes into little-endian limbs. */
    private static void load(byte[] src, short off, short[] limbs) {
        for (short i = 0; i < LIMBS; i++) {
            limbs[i] = (short) (src[(short) (off + LIMBS - 1 - i)] & 0xFF);
        }
    }

    private void store(short[] limbs) {
        for (short i = 0; i < LIMBS; i++) {
            limbs[i] = acc[i];
        }
    }

    private void clearAcc() {
        for (short i = 0; i < ACC_SIZE; i++) {
            acc[i] = 0;
        }
    }

    /** out = x * y mod p (out may be x or y). */
    private void multiply(short[] x, short[] y, short[] out) {
        clearAcc();
        for (short i = 0; i < LIMBS; i++) {
            short xi = x[i];
            for (short j = 0; j < LIMBS; j++) {
                short product = (short) (xi * y[j]);  // < 2^16: as 16 bits, possibly negative
                short k = (short) (i + j);
                acc[k] += (short) (product & 0xFF);
                acc[(short) (k + 1)] += (short) ((product >> 8) & 0xFF);
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
        short carry = 0;
        for (short k = 0; k < ACC_SIZE; k++) {
            short v = (short) (acc[k] + carry);
            acc[k] = (short) (v & 0xFF);
            carry = (short) (v >> 8);
        }
        return carry;
    }

    private short normalizeAddP() {
        for (short i = 0; i < LIMBS; i++) {
            acc[i] += (short) (P256.FIELD_P[(short) (LIMBS - 1 - i)] & 0xFF);
        }
        // The negative top was dropped by normalize(): put the borrow back as limb ACC_SIZE - 1.
        acc[(short) (ACC_SIZE - 1)] = (short) -1;
        short carry = normalize();
        return carry;
    }

    private boolean highIsZero() {
        for (short k = LIMBS; k < ACC_SIZE; k++) {
            if (acc[k] != 0) {
                return false;
            }
        }
        return true;
    }

    /** value = L + H * (2^224 - 2^192 - 2^96 + 1), H the limbs from 32 up. */
    private void fold() {
        short highLimbs = (short) (ACC_SIZE - LIMBS);
        for (short i = 0; i < highLimbs; i++) {
            short h = acc[(short) (LIMBS + i)];
            acc[(short) (LIMBS + i)] = 0;
            if (h == 0) {
                continue;
            }
            acc[i] += h;
            acc[(short) (i + SHIFT_96)] -= h;
            acc[(short) (i + SHIFT_192)] -= h;
            acc[(short) (i + SHIFT_224)] += h;
        }
    }

    private boolean lessThanP() {
        for (short i = (short) (LIMBS - 1); i >= 0; i--) {
            short p = (short) (P256.FIELD_P[(short) (LIMBS - 1 - i)] & 0xFF);
            if (acc[i] != p) {
                return acc[i] < p;
            }
        }
        return false; // equal to p
    }

    private void subtractP() {
        for (short i = 0; i < LIMBS; i++) {
            acc[i] -= (short) (P256.FIELD_P[(short) (LIMBS - 1 - i)] & 0xFF);
        }
        normalize();
    }
}
