package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.math.BigInteger;
import java.security.KeyPairGenerator;
import java.security.interfaces.ECPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The applet's curve equation check against points from the JDK and points just off the curve. */
class PointCheckTest {
    private static PointCheck check;

    @BeforeAll
    static void card() {
        new Simulator();
        check = new PointCheck(new Transients());
    }

    private static byte[] encode(BigInteger x, BigInteger y) {
        byte[] out = new byte[65];
        out[0] = 4;
        byte[] xb = x.toByteArray();
        byte[] yb = y.toByteArray();
        int xl = Math.min(xb.length, 32);
        int yl = Math.min(yb.length, 32);
        System.arraycopy(xb, xb.length - xl, out, 33 - xl, xl);
        System.arraycopy(yb, yb.length - yl, out, 65 - yl, yl);
        return out;
    }

    @Test
    void pointsOfTheCurveAreAcceptedAndNeighboursRefused() throws Exception {
        KeyPairGenerator generator = KeyPairGenerator.getInstance("EC");
        generator.initialize(new ECGenParameterSpec("secp256r1"));
        for (int i = 0; i < 300; i++) {
            ECPublicKey key = (ECPublicKey) generator.generateKeyPair().getPublic();
            BigInteger x = key.getW().getAffineX();
            BigInteger y = key.getW().getAffineY();
            assertTrue(check.isOnCurve(encode(x, y), (short) 0), "a point of P-256");
            assertFalse(check.isOnCurve(encode(x, y.add(BigInteger.ONE)), (short) 0), "y + 1");
            assertFalse(check.isOnCurve(encode(x.xor(BigInteger.ONE), y), (short) 0), "x with its last bit flipped");
        }
    }

    @Test
    void theGeneratorAndEdgeValuesBehave() {
        assertTrue(check.isOnCurve(P256.G, (short) 0));
        byte[] smallY = new byte[65];
        smallY[0] = 4;
        smallY[32] = 1;
        smallY[64] = 1;
        assertFalse(check.isOnCurve(smallY, (short) 0));
        Random random = new Random(7);
        byte[] noise = new byte[65];
        int accepted = 0;
        for (int i = 0; i < 200; i++) {
            random.nextBytes(noise);
            noise[0] = 4;
            noise[1] &= 0x7F; // below p
            noise[33] &= 0x7F;
            accepted += check.isOnCurve(noise, (short) 0) ? 1 : 0;
        }
        assertTrue(accepted == 0, "random pairs are (almost surely) off the curve");
    }
}
