package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.licel.jcardsim.base.Simulator;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import javacard.security.RandomData;
import javax.crypto.Cipher;
import javax.crypto.Mac;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * CBC-SHA256 records checked in constant work (Lucky Thirteen): whatever the padding length, and
 * whether the padding, its length byte or the MAC is wrong, a record of a given length costs the
 * same SHA-256 and AES blocks (the card's counters, which count the blocks the MAC check burns),
 * and every bad record is refused alike.
 */
class RecordCipherCbcTest {
    private static final short CBC = Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256;
    private static Transients ram;
    private static RecordCipher cipher;
    private static OpCounters counters;
    private static final byte[] KEY_BLOCK = new byte[96];
    private static final Random noise = new Random(13);

    @BeforeAll
    static void card() {
        new Simulator();
        ram = new Transients();
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        HmacSha256 hmac = new HmacSha256(ram);
        counters = new OpCounters(ram);
        cipher = new RecordCipher(new AesGcm(ram), new AesCcm(ram), hmac, random, counters, ram);
        noise.nextBytes(KEY_BLOCK);
    }

    /** A record of n bytes of ciphertext (after the IV) with padLength; corrupted as told. */
    private static byte[] record(int n, int padLength, String corrupt) throws Exception {
        // A length byte that claims more padding than the record has room for: one byte of it.
        int len = padLength > n - 33 ? n - 33 : n - 33 - padLength;
        byte[] plain = new byte[len];
        noise.nextBytes(plain);
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(KEY_BLOCK, 0, 32, "HmacSHA256")); // the client's MAC key
        mac.update(new byte[8]);                                      // sequence number 0
        mac.update(new byte[] {Tls.CONTENT_APPLICATION_DATA, 3, 3, (byte) (len >> 8), (byte) len});
        byte[] tag = mac.doFinal(plain);
        if (corrupt.equals("mac")) {
            tag[5] ^= 1;
        }
        byte[] body = new byte[n];
        System.arraycopy(plain, 0, body, 0, len);
        System.arraycopy(tag, 0, body, len, 32);
        for (int i = len + 32; i < n; i++) {
            body[i] = (byte) padLength;
        }
        if (corrupt.equals("padding")) {
            body[n - 2] ^= 0x40; // a padding byte (the length byte stays)
        }
        byte[] iv = new byte[16];
        noise.nextBytes(iv);
        Cipher aes = Cipher.getInstance("AES/CBC/NoPadding");
        aes.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(KEY_BLOCK, 64, 16, "AES"), new IvParameterSpec(iv));
        byte[] ct = aes.doFinal(body);
        byte[] out = new byte[7 + 5 + 16 + n];
        out[7] = Tls.CONTENT_APPLICATION_DATA;
        out[8] = 3;
        out[9] = 3;
        out[10] = (byte) ((16 + n) >> 8);
        out[11] = (byte) (16 + n);
        System.arraycopy(iv, 0, out, 12, 16);
        System.arraycopy(ct, 0, out, 28, n);
        return out;
    }

    private static short counter(short which) {
        return ram.counters[(short) (Transients.OP_COUNTERS + which)];
    }

    /** Unprotects the record; returns {result, SHA-256 blocks, AES blocks} it cost. */
    private static int[] unprotect(byte[] record) {
        cipher.start(CBC, KEY_BLOCK, (short) 0); // sequence numbers back to 0
        counters.reset();
        short result = cipher.unprotect(record, (short) 7);
        return new int[] {result, counter(OpCounters.SHA256_BLOCKS), counter(OpCounters.AES_BLOCKS)};
    }

    @Test
    void everyRecordOfALengthCostsTheSameAndBadOnesAreRefusedAlike() throws Exception {
        for (int n : new int[] {48, 64, 320, 1024}) {
            Set<String> costs = new HashSet<>();
            for (int padLength : new int[] {0, 1, 13, 15, 16, 100, 200, 255}) {
                if (padLength > n - 33) {
                    continue;
                }
                int[] good = unprotect(record(n, padLength, "none"));
                assertEquals(n - 33 - padLength, good[0], "n=" + n + " padding " + padLength);
                costs.add(good[1] + "/" + good[2]);
                int[] badMac = unprotect(record(n, padLength, "mac"));
                assertEquals(-1, badMac[0]);
                costs.add(badMac[1] + "/" + badMac[2]);
                if (padLength > 1) {
                    int[] badPadding = unprotect(record(n, padLength, "padding"));
                    assertEquals(-1, badPadding[0]);
                    costs.add(badPadding[1] + "/" + badPadding[2]);
                }
            }
            if (n - 33 < 255) {
                int[] tooLong = unprotect(record(n, 255, "none"));
                assertEquals(-1, tooLong[0], "a padding length byte beyond the record");
                costs.add(tooLong[1] + "/" + tooLong[2]);
            }
            assertEquals(1, costs.size(), "records of " + n + " bytes cost " + costs);
        }
        cipher.clear();
    }
}
