package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The applet's own HMAC, PRF, GCM and CCM code, run in jcardsim against published vectors
 * (vectors/, shared with the Python tests), including streamed and in-place operation.
 */
class CryptoVectorsTest {
    private static HmacSha256 hmac;
    private static TlsPrf prf;
    private static AesGcm gcm;
    private static AesCcm ccm;
    private static AESKey key;

    @BeforeAll
    static void card() {
        new Simulator(); // a Java Card runtime for JCSystem's transient arrays and the crypto
        hmac = new HmacSha256();
        prf = new TlsPrf(hmac);
        gcm = new AesGcm();
        ccm = new AesCcm();
        key = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES, KeyBuilder.LENGTH_AES_128, false);
    }

    private static short s(int v) {
        return (short) v;
    }

    @Test
    void hmacSha256MatchesRfc4231() throws Exception {
        for (Map<String, byte[]> v : Vectors.load("hmac_sha256.txt")) {
            byte[] k = v.get("key");
            byte[] data = v.get("data");
            byte[] out = new byte[32];
            hmac.init(k, s(0), s(k.length));
            hmac.update(data, s(0), s(data.length / 2));
            hmac.doFinal(data, s(data.length / 2), s(data.length - data.length / 2), out, s(0));
            assertArrayEquals(v.get("mac"), out);
        }
    }

    @Test
    void tlsPrfMatchesThePublishedVector() throws Exception {
        Map<String, byte[]> v = Vectors.load("tls12_prf_sha256.txt").get(0);
        byte[] secret = v.get("secret");
        byte[] label = v.get("label");
        byte[] seed = v.get("seed");
        byte[] out = new byte[v.get("output").length];
        // The seed split in two, as the server passes server_random + client_random.
        prf.derive(secret, s(0), s(secret.length), label, s(0), s(label.length),
                seed, s(0), s(5), seed, s(5), s(seed.length - 5), out, s(0), s(out.length));
        assertArrayEquals(v.get("output"), out);
    }

    @Test
    void gcmSealsAndOpensTheSpecVectorsStreamedAndInPlace() throws Exception {
        for (Map<String, byte[]> v : Vectors.load("aes128_gcm.txt")) {
            key.setKey(v.get("key"), s(0));
            gcm.setKey(key);
            byte[] iv = v.get("iv");
            byte[] aad = v.get("aad");
            byte[] buf = v.get("plaintext").clone();
            gcm.begin(true, iv, s(0), aad, s(0), s(aad.length));
            streamInPlace(buf);
            byte[] tag = new byte[16];
            gcm.finishTag(tag, s(0));
            assertArrayEquals(v.get("ciphertext"), buf);
            assertArrayEquals(v.get("tag"), tag);

            gcm.begin(false, iv, s(0), aad, s(0), s(aad.length));
            streamInPlace(buf);
            assertTrue(gcm.verifyTag(tag, s(0), s(16)));
            assertArrayEquals(v.get("plaintext"), buf);

            tag[0] ^= 1;
            gcm.begin(false, iv, s(0), aad, s(0), s(aad.length));
            gcm.update(v.get("ciphertext"), s(0), s(buf.length), new byte[buf.length], s(0));
            assertFalse(gcm.verifyTag(tag, s(0), s(16)), "a tampered tag must not verify");
        }
    }

    /** Updates in pieces of 32 bytes then the rest: the streaming the record layer relies on. */
    private static void streamInPlace(byte[] buf) {
        int done = 0;
        while (buf.length - done > 32) {
            gcm.update(buf, s(done), s(32), buf, s(done));
            done += 32;
        }
        gcm.update(buf, s(done), s(buf.length - done), buf, s(done));
    }

    @Test
    void ccmSealsAndOpensRfc3610AndTlsShapedVectors() throws Exception {
        List<Map<String, byte[]>> cases = Vectors.load("aes128_ccm.txt");
        for (Map<String, byte[]> v : cases) {
            key.setKey(v.get("key"), s(0));
            ccm.setKey(key);
            byte[] nonce = v.get("nonce");
            byte[] aad = v.get("aad");
            byte[] plain = v.get("plaintext");
            short tagLen = s(v.get("tag").length);
            byte[] buf = plain.clone();
            ccm.begin(true, nonce, s(0), s(nonce.length), aad, s(0), s(aad.length), s(buf.length), tagLen);
            int done = 0;
            while (buf.length - done > 16) {
                ccm.update(buf, s(done), s(16), buf, s(done));
                done += 16;
            }
            ccm.update(buf, s(done), s(buf.length - done), buf, s(done));
            byte[] tag = new byte[tagLen];
            ccm.finishTag(tag, s(0));
            assertArrayEquals(v.get("ciphertext"), buf);
            assertArrayEquals(v.get("tag"), tag);

            ccm.begin(false, nonce, s(0), s(nonce.length), aad, s(0), s(aad.length), s(buf.length), tagLen);
            ccm.update(buf, s(0), s(buf.length), buf, s(0));
            assertTrue(ccm.verifyTag(tag, s(0), tagLen));
            assertArrayEquals(plain, buf);

            byte[] bad = Arrays.copyOf(tag, tag.length);
            bad[bad.length - 1] ^= 1;
            ccm.begin(false, nonce, s(0), s(nonce.length), aad, s(0), s(aad.length), s(buf.length), tagLen);
            ccm.update(v.get("ciphertext"), s(0), s(buf.length), new byte[buf.length], s(0));
            assertFalse(ccm.verifyTag(bad, s(0), tagLen), "a tampered tag must not verify");
        }
        assertEquals(5, cases.size());
    }
}
