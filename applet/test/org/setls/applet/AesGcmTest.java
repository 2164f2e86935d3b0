package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacard.security.KeyBuilder;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * AesGcm in jcardsim: the GCM spec's test cases 1-4 (vectors/aes_gcm_nist.json), then the JDK's
 * AES/GCM as a reference for record-sized messages, streamed across many update() calls and in
 * place, as the record layer does it.
 */
class AesGcmTest {
    private static final int TAG = 16;
    /** Where the message sits in the buffers: not at 0, as in the card's I/O buffer. */
    private static final int OFF = 7;
    private static AesGcm gcm;
    private static AESKey key;

    @BeforeAll
    static void card() {
        new Simulator(); // a Java Card runtime for JCSystem's transient arrays and the crypto
        gcm = new AesGcm(new Transients());
        key = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES, KeyBuilder.LENGTH_AES_128, false);
    }

    private static short s(int v) {
        return (short) v;
    }

    /**
     * Encrypts (or decrypts) text in place at OFF of a larger buffer, in update() calls of
     * {@code chunk} bytes (a multiple of 16) and a last one with the rest; returns the result.
     */
    private static byte[] run(boolean encrypt, byte[] k, byte[] iv, byte[] aad, byte[] text, int chunk) {
        key.setKey(k, s(0));
        gcm.setKey(key);
        gcm.begin(encrypt, iv, s(0), aad, s(0), s(aad.length));
        byte[] buf = new byte[OFF + text.length + TAG];
        System.arraycopy(text, 0, buf, OFF, text.length);
        int done = 0;
        while (text.length - done > chunk) {
            assertEquals(chunk, gcm.update(buf, s(OFF + done), s(chunk), buf, s(OFF + done)));
            done += chunk;
        }
        assertEquals(text.length - done, gcm.update(buf, s(OFF + done), s(text.length - done), buf, s(OFF + done)));
        return Arrays.copyOfRange(buf, OFF, OFF + text.length);
    }

    private static byte[] tag() {
        byte[] t = new byte[TAG + 2];
        gcm.finishTag(t, s(2));
        return Arrays.copyOfRange(t, 2, 2 + TAG);
    }

    @Test
    void specTestCasesOneToFourStreamedAndInPlace() throws Exception {
        List<JsonVectors.Case> cases = JsonVectors.cases("aes_gcm_nist.json");
        assertEquals(4, cases.size());
        for (JsonVectors.Case v : cases) {
            for (int chunk : new int[] {16, 32, 48, 4096}) {
                byte[] c = run(true, v.hex("key"), v.hex("iv"), v.hex("aad"), v.hex("plaintext"), chunk);
                assertArrayEquals(v.hex("ciphertext"), c, v + ", chunks of " + chunk);
                assertArrayEquals(v.hex("tag"), tag(), v + ", chunks of " + chunk);

                byte[] p = run(false, v.hex("key"), v.hex("iv"), v.hex("aad"), v.hex("ciphertext"), chunk);
                assertArrayEquals(v.hex("plaintext"), p, v + " decrypted");
                assertTrue(gcm.verifyTag(v.hex("tag"), s(0), s(TAG)), v + " tag");
            }
        }
    }

    @Test
    void aTamperedTagCiphertextOrAadFailsToVerify() throws Exception {
        for (JsonVectors.Case v : JsonVectors.cases("aes_gcm_nist.json")) {
            byte[] tag = v.hex("tag");
            tag[15] ^= (byte) 0x80;
            run(false, v.hex("key"), v.hex("iv"), v.hex("aad"), v.hex("ciphertext"), 16);
            assertFalse(gcm.verifyTag(tag, s(0), s(TAG)), v + ": tampered tag");

            byte[] c = v.hex("ciphertext");
            if (c.length > 0) {
                c[c.length - 1] ^= 1;
                run(false, v.hex("key"), v.hex("iv"), v.hex("aad"), c, 16);
                assertFalse(gcm.verifyTag(v.hex("tag"), s(0), s(TAG)), v + ": tampered ciphertext");
            }
            byte[] aad = Arrays.copyOf(v.hex("aad"), v.hex("aad").length + 1);
            run(false, v.hex("key"), v.hex("iv"), aad, v.hex("ciphertext"), 16);
            assertFalse(gcm.verifyTag(v.hex("tag"), s(0), s(TAG)), v + ": other AAD");

            run(false, v.hex("key"), v.hex("iv"), v.hex("aad"), v.hex("ciphertext"), 16);
            assertFalse(gcm.verifyTag(v.hex("tag"), s(0), s(12)), v + ": a truncated tag is refused");
        }
    }

    private static byte[] jdkSeal(byte[] k, byte[] iv, byte[] aad, byte[] plain) throws Exception {
        Cipher jdk = Cipher.getInstance("AES/GCM/NoPadding");
        jdk.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(k, "AES"), new GCMParameterSpec(128, iv));
        jdk.updateAAD(aad);
        return jdk.doFinal(plain);
    }

    @Test
    void recordSizedMessagesMatchTheJdk() throws Exception {
        Random random = new Random(38);
        // TLS's 13-byte AAD, none, and more than a block; payloads around block edges up to 16 KB.
        int[][] shapes = {{13, 0}, {13, 1}, {0, 15}, {13, 16}, {20, 17}, {13, 255}, {13, 1000}, {13, 16384}};
        for (int[] shape : shapes) {
            byte[] k = new byte[16];
            byte[] iv = new byte[12];
            byte[] aad = new byte[shape[0]];
            byte[] plain = new byte[shape[1]];
            random.nextBytes(k);
            random.nextBytes(iv);
            random.nextBytes(aad);
            random.nextBytes(plain);
            byte[] sealed = jdkSeal(k, iv, aad, plain);
            byte[] expectedC = Arrays.copyOf(sealed, plain.length);
            byte[] expectedT = Arrays.copyOfRange(sealed, plain.length, sealed.length);
            for (int chunk : new int[] {16, 240, 1024}) {
                String what = aad.length + "-byte AAD, " + plain.length + " bytes, chunks of " + chunk;
                assertArrayEquals(expectedC, run(true, k, iv, aad, plain, chunk), what);
                assertArrayEquals(expectedT, tag(), what);
                assertArrayEquals(plain, run(false, k, iv, aad, expectedC, chunk), what);
                assertTrue(gcm.verifyTag(expectedT, s(0), s(TAG)), what);
            }
        }
    }

    @Test
    void separateInputAndOutputBuffers() throws Exception {
        JsonVectors.Case v = JsonVectors.cases("aes_gcm_nist.json").get(3);
        byte[] in = v.hex("plaintext");
        byte[] out = new byte[in.length + 3];
        key.setKey(v.hex("key"), s(0));
        gcm.setKey(key);
        gcm.begin(true, v.hex("iv"), s(0), v.hex("aad"), s(0), s(v.hex("aad").length));
        gcm.update(in, s(0), s(32), out, s(3));
        gcm.update(in, s(32), s(in.length - 32), out, s(35));
        assertArrayEquals(v.hex("ciphertext"), Arrays.copyOfRange(out, 3, out.length));
        assertArrayEquals(v.hex("plaintext"), in, "the input is left alone");
        assertArrayEquals(v.hex("tag"), tag());
    }

    @Test
    void twoKeysAlternatingAsTheRecordLayerDoes() throws Exception {
        List<JsonVectors.Case> cases = JsonVectors.cases("aes_gcm_nist.json");
        for (int round = 0; round < 3; round++) {
            for (JsonVectors.Case v : List.of(cases.get(1), cases.get(3))) {
                assertArrayEquals(v.hex("ciphertext"),
                        run(true, v.hex("key"), v.hex("iv"), v.hex("aad"), v.hex("plaintext"), 16));
                assertArrayEquals(v.hex("tag"), tag());
            }
        }
    }

    @Test
    void updatesOfAnyLengthGiveTheSameAsOne() throws Exception {
        // A record in pieces meets its 8-byte explicit nonce first: its updates are not whole blocks.
        for (JsonVectors.Case v : JsonVectors.cases("aes_gcm_nist.json")) {
            byte[] text = v.hex("plaintext");
            key.setKey(v.hex("key"), s(0));
            gcm.setKey(key);
            byte[] aad = v.hex("aad");
            gcm.begin(true, v.hex("iv"), s(0), aad, s(0), s(aad.length));
            byte[] out = new byte[text.length];
            int[] sizes = {1, 7, 20, 3, 16, 33};
            int done = 0;
            for (int i = 0; done < text.length; i++) {
                int n = Math.min(sizes[i % sizes.length], text.length - done);
                gcm.update(text, s(done), s(n), out, s(done));
                done += n;
            }
            byte[] tag = new byte[16];
            gcm.finishTag(tag, s(0));
            assertArrayEquals(v.hex("ciphertext"), out);
            assertArrayEquals(v.hex("tag"), Arrays.copyOf(tag, v.hex("tag").length));
        }
    }
}
