package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.licel.jcardsim.base.Simulator;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** HmacSha256 in jcardsim: RFC 4231 (vectors/hmac_sha256_rfc4231.json), streamed and in place. */
class HmacSha256Test {
    private static final String VECTORS = "hmac_sha256_rfc4231.json";
    private static HmacSha256 hmac;

    @BeforeAll
    static void card() {
        // jcardsim keeps its runtime per thread: JCSystem's transient arrays need one to exist.
        new Simulator();
        hmac = new HmacSha256(new Transients());
    }

    private static short s(int v) {
        return (short) v;
    }

    /** The MAC of data, given to update() in pieces of {@code piece} bytes (the last to doFinal). */
    private static byte[] mac(byte[] key, byte[] data, int piece) {
        hmac.init(key, s(0), s(key.length));
        int done = 0;
        while (data.length - done > piece) {
            hmac.update(data, s(done), s(piece));
            done += piece;
        }
        byte[] out = new byte[HmacSha256.HASH_SIZE];
        assertEquals(32, hmac.doFinal(data, s(done), s(data.length - done), out, s(0)));
        return out;
    }

    @Test
    void rfc4231CasesOneToSeven() throws Exception {
        List<JsonVectors.Case> cases = JsonVectors.cases(VECTORS);
        assertEquals(7, cases.size());
        for (JsonVectors.Case v : cases) {
            byte[] expected = v.hex("mac"); // case 5 is published truncated to 128 bits
            for (int piece : new int[] {1000, 1, 7, 16, 64}) {
                byte[] out = mac(v.hex("key"), v.hex("data"), piece);
                assertArrayEquals(expected, Arrays.copyOf(out, expected.length), v + ", pieces of " + piece);
            }
        }
    }

    @Test
    void restartKeepsTheKeyAndTheOutputMayOverwriteTheInput() throws Exception {
        JsonVectors.Case v = JsonVectors.cases(VECTORS).get(1);
        byte[] data = v.hex("data");
        byte[] buf = new byte[Math.max(data.length, 32) + 5];
        System.arraycopy(data, 0, buf, 5, data.length);
        hmac.init(v.hex("key"), s(0), s(v.hex("key").length));
        hmac.doFinal(new byte[1], s(0), s(1), new byte[32], s(0)); // some other message first
        hmac.restart();
        hmac.doFinal(buf, s(5), s(data.length), buf, s(5));
        assertArrayEquals(v.hex("mac"), Arrays.copyOfRange(buf, 5, 37));
    }

    @Test
    void matchesTheJdkForKeysAroundTheBlockSize() throws Exception {
        Random random = new Random(4231);
        Mac jdk = Mac.getInstance("HmacSHA256");
        for (int keyLen : new int[] {1, 32, 63, 64, 65, 128, 200}) {
            for (int dataLen : new int[] {0, 1, 55, 56, 64, 300}) {
                byte[] key = new byte[keyLen];
                byte[] data = new byte[dataLen];
                random.nextBytes(key);
                random.nextBytes(data);
                jdk.init(new SecretKeySpec(key, "HmacSHA256"));
                assertArrayEquals(jdk.doFinal(data), mac(key, data, 13), "key " + keyLen + ", data " + dataLen);
            }
        }
    }

    @Test
    void aChangedByteChangesTheMac() throws Exception {
        JsonVectors.Case v = JsonVectors.cases(VECTORS).get(0);
        byte[] data = v.hex("data");
        data[0] ^= 1;
        assertFalse(Arrays.equals(v.hex("mac"), mac(v.hex("key"), data, 64)));
    }
}
