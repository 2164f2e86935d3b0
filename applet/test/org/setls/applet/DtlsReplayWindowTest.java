package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.util.Arrays;
import java.util.Random;
import javacard.security.RandomData;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * DTLS records in the card (RFC 6347 4.1.2.6): each sequence number of epoch 1 is taken once,
 * in any order within the 64-record window; one 64 or more behind the newest, a replay, another
 * epoch and a forgery are dropped (openDtls -3, finish -1) and leave the window as it was.
 */
class DtlsReplayWindowTest {
    private static Transients ram;
    private static RecordCipher cipher;
    private static final Random noise = new Random(6347);

    @BeforeAll
    static void card() {
        new Simulator();
        ram = new Transients();
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        cipher = new RecordCipher(new AesGcm(ram), new AesCcm(ram), new HmacSha256(ram), random, new OpCounters(ram),
                ram);
    }

    /** Records the card writes, numbered 0.. in epoch 1; client keys = server keys, so it reads them back. */
    private static byte[][] records(int count) {
        ram.shorts[Transients.DTLS_MODE] = 1;
        byte[] half = new byte[20];
        noise.nextBytes(half);
        byte[] keyBlock = new byte[96];
        System.arraycopy(half, 0, keyBlock, 0, 16);
        System.arraycopy(half, 0, keyBlock, 16, 16);
        System.arraycopy(half, 16, keyBlock, 32, 4);
        System.arraycopy(half, 16, keyBlock, 36, 4);
        cipher.start(Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, keyBlock, (short) 0);
        byte[][] out = new byte[count][];
        for (int i = 0; i < count; i++) {
            byte[] buf = new byte[64];
            short prefix = cipher.prefixLength();
            buf[prefix] = (byte) i;
            short n = cipher.protect(Tls.CONTENT_APPLICATION_DATA, buf, (short) 0, (short) 1);
            out[i] = Arrays.copyOf(buf, n);
        }
        return out;
    }

    /** 1 + its plaintext (the record's number) if the record opens and authenticates, else what open or finish said. */
    private static int open(byte[] record) {
        byte[] buf = record.clone();
        short fragment = (short) (buf.length - Tls.DTLS_RECORD_HEADER_SIZE);
        short tail = fragment < 32 ? fragment : (short) 32;
        short len = cipher.openDtls(buf, (short) 0, buf, (short) (buf.length - tail));
        if (len < 0) {
            return len;
        }
        cipher.take(buf, Tls.DTLS_RECORD_HEADER_SIZE, fragment);
        short plain = cipher.finish();
        if (plain < 0) {
            return plain;
        }
        assertEquals(1, plain);
        return 1 + (buf[Tls.DTLS_RECORD_HEADER_SIZE] & 0xFF); // 1 + the record's number, its plaintext

    }

    @Test
    void eachRecordIsTakenOnceInAnyOrderWithinTheWindow() {
        byte[][] r = records(200);
        int[] order = {0, 2, 1, 5, 3, 4, 70, 10, 69, 7};
        for (int i : order) {
            assertEquals(1 + i, open(r[i]), "record " + i + " is new");
        }
        for (int i : order) {
            assertEquals(-3, open(r[i]), "record " + i + " again is a replay");
        }
        assertEquals(1 + 8, open(r[8]), "8 is within 64 of 70 and new");
        assertEquals(-3, open(r[6]), "6 is 64 behind 70: left of the window");
        assertEquals(1 + 199, open(r[199]), "far ahead moves the window");
        assertEquals(-3, open(r[100]), "99 behind the newest");
        assertEquals(1 + 150, open(r[150]), "49 behind the newest and new");
    }

    @Test
    void anotherEpochAndAForgeryAreDroppedAndTheRecordStillOpensAfter() {
        byte[][] r = records(4);
        byte[] epoch2 = r[1].clone();
        epoch2[4] = 2;
        assertEquals(-3, open(epoch2));
        byte[] forged = r[1].clone();
        forged[forged.length - 1] ^= 1;
        assertEquals(-1, open(forged));
        assertEquals(1 + 1, open(r[1]), "the genuine record after both");
        assertEquals(-3, open(r[1]));
        assertTrue(open(r[0]) == 1 && open(r[3]) == 4);
    }
}
