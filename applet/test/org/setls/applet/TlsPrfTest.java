package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.licel.jcardsim.base.Simulator;
import java.io.ByteArrayOutputStream;
import java.util.Arrays;
import java.util.Random;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** TlsPrf in jcardsim: the published PRF-SHA256 vector (vectors/tls12_prf_sha256.json). */
class TlsPrfTest {
    private static final byte SENTINEL = (byte) 0xA5;
    private static TlsPrf prf;

    @BeforeAll
    static void card() {
        new Simulator(); // a Java Card runtime for JCSystem's transient arrays
        Transients ram = new Transients();
        prf = new TlsPrf(new HmacSha256(ram), ram);
    }

    private static short s(int v) {
        return (short) v;
    }

    /** PRF output of n bytes at offset 3 of a buffer whose other bytes must stay SENTINEL. */
    private static byte[] derive(byte[] secret, byte[] label, byte[] seed, int split, int n) {
        byte[] out = new byte[n + 6];
        Arrays.fill(out, SENTINEL);
        byte[] seed2 = split < 0 ? null : seed;
        int s1Len = split < 0 ? seed.length : split;
        prf.derive(secret, s(0), s(secret.length), label, s(0), s(label.length),
                seed, s(0), s(s1Len), seed2, s(s1Len), s(split < 0 ? 0 : seed.length - split),
                out, s(3), s(n));
        for (int i : new int[] {0, 1, 2, n + 3, n + 4, n + 5}) {
            assertEquals(SENTINEL, out[i], "wrote outside the output at " + i);
        }
        return Arrays.copyOfRange(out, 3, 3 + n);
    }

    @Test
    void thePublishedVectorWithTheSeedWholeOrSplit() throws Exception {
        JsonVectors.Case v = JsonVectors.cases("tls12_prf_sha256.json").get(0);
        byte[] expected = v.hex("output");
        assertEquals(100, expected.length);
        for (int split : new int[] {-1, 0, 5, 16}) { // -1: seed2 null
            assertArrayEquals(expected, derive(v.hex("secret"), v.hex("label"), v.hex("seed"), split, 100),
                    "seed split at " + split);
        }
    }

    @Test
    void shorterOutputsArePrefixes() throws Exception {
        JsonVectors.Case v = JsonVectors.cases("tls12_prf_sha256.json").get(0);
        byte[] expected = v.hex("output");
        for (int n : new int[] {0, 1, 12, 31, 32, 33, 48, 64, 65, 96, 99}) {
            assertArrayEquals(Arrays.copyOf(expected, n), derive(v.hex("secret"), v.hex("label"), v.hex("seed"), 7, n),
                    n + " bytes");
        }
    }

    /** RFC 5246 section 5 on the JDK's HMAC: a second implementation for TLS-shaped inputs. */
    private static byte[] reference(byte[] secret, byte[] label, byte[] seed, int n) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        byte[] labelSeed = new byte[label.length + seed.length];
        System.arraycopy(label, 0, labelSeed, 0, label.length);
        System.arraycopy(seed, 0, labelSeed, label.length, seed.length);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] a = labelSeed;
        while (out.size() < n) {
            a = mac.doFinal(a);
            mac.update(a);
            out.write(mac.doFinal(labelSeed));
        }
        return Arrays.copyOf(out.toByteArray(), n);
    }

    @Test
    void masterSecretAndKeyExpansionShapesMatchTheJdk() throws Exception {
        Random random = new Random(5246);
        byte[] premaster = new byte[32];
        byte[] randoms = new byte[64];
        random.nextBytes(premaster);
        random.nextBytes(randoms);
        byte[] masterLabel = "master secret".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        byte[] master = derive(premaster, masterLabel, randoms, 32, 48);
        assertArrayEquals(reference(premaster, masterLabel, randoms, 48), master);
        byte[] expansion = "key expansion".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        for (int n : new int[] {40, 104}) { // GCM/CCM key block, CBC-SHA256 key block
            assertArrayEquals(reference(master, expansion, randoms, n), derive(master, expansion, randoms, 32, n));
        }
    }
}
