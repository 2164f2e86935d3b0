package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.io.ByteArrayOutputStream;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import javacard.security.AESKey;
import javacard.security.CryptoException;
import javacard.security.KeyBuilder;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * AesCcm in jcardsim: RFC 3610 packet vectors, SP 800-38C examples and TLS-shaped cases
 * (vectors/aes_ccm.json), streamed and in place; record-sized messages against a one-shot
 * SP 800-38C reference written here on the JDK's AES (the JDK has no CCM).
 */
class AesCcmTest {
    private static final int OFF = 5;
    private static AesCcm ccm;
    private static AESKey key;

    @BeforeAll
    static void card() {
        new Simulator(); // a Java Card runtime for JCSystem's transient arrays and the crypto
        ccm = new AesCcm(new Transients());
        key = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES, KeyBuilder.LENGTH_AES_128, false);
    }

    private static short s(int v) {
        return (short) v;
    }

    private static void begin(boolean encrypt, byte[] k, byte[] nonce, byte[] aad, int payload, int tagLen) {
        key.setKey(k, s(0));
        ccm.setKey(key);
        ccm.begin(encrypt, nonce, s(0), s(nonce.length), aad, s(0), s(aad.length), s(payload), s(tagLen));
    }

    /** text in place at OFF of a larger buffer, in update() calls of chunk bytes and the rest. */
    private static byte[] run(boolean encrypt, byte[] k, byte[] nonce, byte[] aad, byte[] text, int tagLen, int chunk) {
        begin(encrypt, k, nonce, aad, text.length, tagLen);
        byte[] buf = new byte[OFF + text.length + 16];
        System.arraycopy(text, 0, buf, OFF, text.length);
        int done = 0;
        while (text.length - done > chunk) {
            assertEquals(chunk, ccm.update(buf, s(OFF + done), s(chunk), buf, s(OFF + done)));
            done += chunk;
        }
        assertEquals(text.length - done, ccm.update(buf, s(OFF + done), s(text.length - done), buf, s(OFF + done)));
        return Arrays.copyOfRange(buf, OFF, OFF + text.length);
    }

    private static byte[] tag(int tagLen) {
        byte[] t = new byte[tagLen + 1];
        ccm.finishTag(t, s(1));
        return Arrays.copyOfRange(t, 1, 1 + tagLen);
    }

    @Test
    void publishedAndTlsShapedVectorsStreamedAndInPlace() throws Exception {
        List<JsonVectors.Case> cases = JsonVectors.cases("aes_ccm.json");
        assertEquals(10, cases.size());
        for (JsonVectors.Case v : cases) {
            int tagLen = v.hex("tag").length;
            for (int chunk : new int[] {16, 32, 4096}) {
                String what = v + ", chunks of " + chunk;
                byte[] c = run(true, v.hex("key"), v.hex("nonce"), v.hex("aad"), v.hex("plaintext"), tagLen, chunk);
                assertArrayEquals(v.hex("ciphertext"), c, what);
                assertArrayEquals(v.hex("tag"), tag(tagLen), what);

                byte[] p = run(false, v.hex("key"), v.hex("nonce"), v.hex("aad"), v.hex("ciphertext"), tagLen, chunk);
                assertArrayEquals(v.hex("plaintext"), p, what + " decrypted");
                assertTrue(ccm.verifyTag(v.hex("tag"), s(0), s(tagLen)), what + " tag");
            }
        }
    }

    @Test
    void aTamperedTagCiphertextOrAadFailsToVerify() throws Exception {
        for (JsonVectors.Case v : JsonVectors.cases("aes_ccm.json")) {
            int tagLen = v.hex("tag").length;
            byte[] tag = v.hex("tag");
            tag[0] ^= 1;
            run(false, v.hex("key"), v.hex("nonce"), v.hex("aad"), v.hex("ciphertext"), tagLen, 16);
            assertFalse(ccm.verifyTag(tag, s(0), s(tagLen)), v + ": tampered tag");

            byte[] c = v.hex("ciphertext");
            if (c.length > 0) {
                c[c.length / 2] ^= 0x40;
                run(false, v.hex("key"), v.hex("nonce"), v.hex("aad"), c, tagLen, 16);
                assertFalse(ccm.verifyTag(v.hex("tag"), s(0), s(tagLen)), v + ": tampered ciphertext");
            }
            byte[] aad = v.hex("aad");
            if (aad.length > 0) {
                aad[0] ^= 1;
                run(false, v.hex("key"), v.hex("nonce"), aad, v.hex("ciphertext"), tagLen, 16);
                assertFalse(ccm.verifyTag(v.hex("tag"), s(0), s(tagLen)), v + ": tampered AAD");
            }
            run(false, v.hex("key"), v.hex("nonce"), v.hex("aad"), v.hex("ciphertext"), tagLen, 16);
            assertFalse(ccm.verifyTag(v.hex("tag"), s(0), s(tagLen - 2)), v + ": a shorter tag is refused");
        }
    }

    /** SP 800-38C 6.1 in one shot (a < 2^16 - 2^8), on the JDK's AES: ciphertext || tag. */
    private static byte[] reference(byte[] k, byte[] nonce, byte[] aad, byte[] plain, int tagLen) throws Exception {
        Cipher aes = Cipher.getInstance("AES/ECB/NoPadding");
        aes.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(k, "AES"));
        int q = 15 - nonce.length;
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        b.write((aad.length > 0 ? 0x40 : 0) | ((tagLen - 2) / 2) << 3 | (q - 1));
        b.write(nonce);
        for (int i = q - 1; i >= 0; i--) {
            b.write(i >= 4 ? 0 : plain.length >>> (8 * i));
        }
        if (aad.length > 0) {
            b.write(aad.length >> 8);
            b.write(aad.length);
            b.write(aad);
            b.write(new byte[(16 - (aad.length + 2) % 16) % 16]);
        }
        b.write(plain);
        b.write(new byte[(16 - plain.length % 16) % 16]);
        byte[] blocks = b.toByteArray();
        byte[] y = new byte[16];
        for (int i = 0; i < blocks.length; i += 16) {
            for (int j = 0; j < 16; j++) {
                y[j] ^= blocks[i + j];
            }
            y = aes.doFinal(y);
        }
        byte[] out = new byte[plain.length + tagLen];
        byte[] ctr = new byte[16];
        ctr[0] = (byte) (q - 1);
        System.arraycopy(nonce, 0, ctr, 1, nonce.length);
        for (int i = 0; i <= (plain.length + 15) / 16; i++) {
            for (int j = 0; j < Math.min(q, 4); j++) { // the counter is the last q bytes
                ctr[15 - j] = (byte) (i >>> (8 * j));
            }
            byte[] s = aes.doFinal(ctr);
            if (i == 0) {
                for (int j = 0; j < tagLen; j++) {
                    out[plain.length + j] = (byte) (y[j] ^ s[j]);
                }
            } else {
                for (int j = 0; j < 16 && (i - 1) * 16 + j < plain.length; j++) {
                    out[(i - 1) * 16 + j] = (byte) (plain[(i - 1) * 16 + j] ^ s[j]);
                }
            }
        }
        return out;
    }

    @Test
    void theReferenceAgreesWithTheVectors() throws Exception {
        for (JsonVectors.Case v : JsonVectors.cases("aes_ccm.json")) {
            byte[] expected = Arrays.copyOf(v.hex("ciphertext"), v.hex("ciphertext").length + v.hex("tag").length);
            System.arraycopy(v.hex("tag"), 0, expected, v.hex("ciphertext").length, v.hex("tag").length);
            assertArrayEquals(expected, reference(v.hex("key"), v.hex("nonce"), v.hex("aad"), v.hex("plaintext"),
                    v.hex("tag").length), v.toString());
        }
    }

    @Test
    void recordSizedMessagesMatchTheReference() throws Exception {
        Random random = new Random(6655);
        // {nonce, aad, payload, tag}: TLS CCM and CCM_8 records up to 16 KB (1025 counter values:
        // carries into the counter's second byte), and other nonce lengths.
        int[][] shapes = {{12, 13, 0, 16}, {12, 13, 17, 8}, {12, 13, 4095, 16}, {12, 13, 16384, 16},
                          {12, 13, 16384, 8}, {7, 30, 600, 10}, {13, 0, 300, 4}};
        for (int[] shape : shapes) {
            byte[] k = new byte[16];
            byte[] nonce = new byte[shape[0]];
            byte[] aad = new byte[shape[1]];
            byte[] plain = new byte[shape[2]];
            random.nextBytes(k);
            random.nextBytes(nonce);
            random.nextBytes(aad);
            random.nextBytes(plain);
            int tagLen = shape[3];
            byte[] sealed = reference(k, nonce, aad, plain, tagLen);
            byte[] expectedC = Arrays.copyOf(sealed, plain.length);
            byte[] expectedT = Arrays.copyOfRange(sealed, plain.length, sealed.length);
            for (int chunk : new int[] {16, 240, 1024}) {
                String what = Arrays.toString(shape) + ", chunks of " + chunk;
                assertArrayEquals(expectedC, run(true, k, nonce, aad, plain, tagLen, chunk), what);
                assertArrayEquals(expectedT, tag(tagLen), what);
                assertArrayEquals(plain, run(false, k, nonce, aad, expectedC, tagLen, chunk), what);
                assertTrue(ccm.verifyTag(expectedT, s(0), s(tagLen)), what);
            }
        }
    }

    private static void assertReason(short reason, org.junit.jupiter.api.function.Executable call) {
        CryptoException e = assertThrows(CryptoException.class, call);
        assertEquals(reason, e.getReason());
    }

    @Test
    void badParametersAndMisuseAreRefused() throws Exception {
        JsonVectors.Case v = JsonVectors.cases("aes_ccm.json").get(0);
        byte[] k = v.hex("key");
        byte[] aad = v.hex("aad");
        for (int[] bad : new int[][] {{6, 8}, {14, 8}, {13, 2}, {13, 5}, {13, 18}}) {
            assertReason(CryptoException.ILLEGAL_VALUE, () -> begin(true, k, new byte[bad[0]], aad, 16, bad[1]));
        }
        byte[] buf = new byte[48];
        begin(true, k, v.hex("nonce"), aad, 40, 8);
        ccm.update(buf, s(0), s(16), buf, s(0));
        assertReason(CryptoException.ILLEGAL_USE, () -> ccm.finishTag(new byte[8], s(0)));
        assertReason(CryptoException.ILLEGAL_USE, () -> ccm.update(buf, s(16), s(32), buf, s(16)));
        ccm.update(buf, s(16), s(17), buf, s(16)); // any length: a record in pieces is not whole blocks
        ccm.update(buf, s(33), s(7), buf, s(33));
        ccm.finishTag(new byte[8], s(0));
    }
}
