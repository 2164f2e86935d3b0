package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.licel.jcardsim.base.Simulator;
import com.licel.jcardsim.base.SimulatorRuntime;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.SecureRandom;
import java.security.interfaces.ECPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;
import javacard.framework.AID;
import javacard.framework.Applet;
import javacard.security.CryptoException;
import javacard.framework.ISOException;
import javax.crypto.Cipher;
import javax.crypto.KeyAgreement;
import javax.crypto.Mac;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * No command returns key material, whatever its parameters and whatever credential is held: on a
 * card with two planted PSKs and generated keys (serving and staged), every INS with P1P2 = 0000,
 * and every INS the applet knows with every P1 and P2 in {00, each slot, FF}, are sent without a
 * credential, with the PINs verified, with an operator session (each operator command with a valid
 * MAC), and with both. No response (GET RESPONSE parts joined) may contain any 16-byte window of a
 * PSK or of any private scalar the identities held during the scan (read through the simulator,
 * which only a test can do).
 */
class SecretScanTest {
    private static final byte CLA = (byte) 0xA0;
    private static final byte[] PIN = "1234".getBytes();
    private static final byte[] PUK = "87654321".getBytes();
    private static final byte[] PSK_A = hex("00112233445566778899aabbccddeeff0123456789abcdef");
    private static final byte[] PSK_B = hex("f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f1122334455667788");
    private static final byte[] KNOWN_INS = {
        Constants.INS_VERIFY, Constants.INS_CHANGE_PIN, Constants.INS_SIGN_CSR, Constants.INS_UNBLOCK_PIN,
        Constants.INS_GENERATE_KEY, Constants.INS_INITIALIZE, Constants.INS_PROCESS_EAP,
        Constants.INS_OPERATOR_AUTHENTICATE, Constants.INS_UNPROTECT_RECORD, Constants.INS_PROTECT_RECORD,
        Constants.INS_EXPORT_KEYS, Constants.INS_OPERATOR_CHALLENGE, Constants.INS_GET_RESPONSE,
        Constants.INS_GET_DATA, Constants.INS_PUT_DATA, Constants.INS_GET_COUNTERS, Constants.INS_WIPE};
    private static final byte[] OPERATOR_INS = {Constants.INS_GENERATE_KEY, Constants.INS_SIGN_CSR,
        Constants.INS_PUT_DATA, Constants.INS_WIPE};

    /** jcardsim's runtime, with its applet lookup made visible to the test (a protected method). */
    static final class Runtime extends SimulatorRuntime {
        Applet applet(AID aid) {
            return getApplet(aid);
        }
    }

    private Simulator sim;
    private SeTlsApplet applet;
    private final KeyPair operatorKey;
    private final SecureRandom rng = new SecureRandom();
    private byte[] macKey;
    private byte[] encKey;
    private int counter;
    private boolean open;
    private final Set<ByteBuffer> windows = new HashSet<>();
    private int apdus;

    SecretScanTest() throws Exception {
        KeyPairGenerator gen = KeyPairGenerator.getInstance("EC");
        gen.initialize(new ECGenParameterSpec("secp256r1"));
        operatorKey = gen.generateKeyPair();
    }

    @Test
    @Timeout(120)
    void noResponseCarriesAPskOrAPrivateScalar() throws Exception {
        setUp();
        for (int state = 0; state < 4; state++) {
            boolean pin = (state & 1) != 0;
            boolean operator = (state & 2) != 0;
            sim.reset();
            sim.selectApplet(aid());
            open = false;
            if (pin) {
                for (byte slot = 0; slot < Constants.MAX_IDENTITIES; slot++) {
                    expect(0x9000, send(Constants.INS_VERIFY, 0, slot, PIN));
                }
            }
            for (int ins = 0; ins < 256; ins++) {
                scan(operator, (byte) ins, 0, 0);
            }
            for (byte ins : KNOWN_INS) {
                for (int p1 = 0; p1 < 256; p1++) {
                    for (int p2 : new int[] {0, 1, 0xFF}) {
                        scan(operator, ins, p1, p2);
                    }
                }
            }
        }
        assertTrue(apdus > 4 * (256 + KNOWN_INS.length * 256 * 3), "the scan ran: " + apdus);
        assertTrue(windows.size() >= 2 * 17, "secrets were planted and read");
    }

    private void setUp() throws Exception {
        Runtime runtime = new Runtime();
        sim = new Simulator(runtime);
        sim.installApplet(aid(), SeTlsApplet.class);
        sim.selectApplet(aid());
        applet = (SeTlsApplet) runtime.applet(aid());
        byte[] init = concat(new byte[] {(byte) PIN.length}, PIN, new byte[] {(byte) PUK.length}, PUK,
                point((ECPublicKey) operatorKey.getPublic()));
        expect(0x9000, send(Constants.INS_INITIALIZE, 0, 0, init));
        openSession();
        expect(0x9000, operator(Constants.INS_GENERATE_KEY, Constants.KEY_SERVING, 0, new byte[0]));
        expect(0x9000, operator(Constants.INS_GENERATE_KEY, Constants.KEY_STAGED, 0, new byte[0]));
        expect(0x9000, operator(Constants.INS_GENERATE_KEY, Constants.KEY_SERVING, 1, new byte[0]));
        plantPsk("client-a", PSK_A);
        plantPsk("client-b", PSK_B);
        addWindows(PSK_A);
        addWindows(PSK_B);
        readScalars();
    }

    private void plantPsk(String id, byte[] key) throws Exception {
        byte[] plain = new byte[PskStore.BLOCK];
        plain[0] = (byte) key.length;
        System.arraycopy(key, 0, plain, 1, key.length);
        byte[] iv = new byte[16];
        rng.nextBytes(iv);
        Cipher aes = Cipher.getInstance("AES/CBC/NoPadding");
        aes.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(encKey, "AES"), new IvParameterSpec(iv));
        byte[] data = concat(new byte[] {(byte) id.length()}, id.getBytes(), iv, aes.doFinal(plain));
        expect(0x9000, operator(Constants.INS_PUT_DATA, Constants.DATA_PSK, 0, data));
    }

    /** One command of the scan, its response checked; keeps the operator session open when asked. */
    private void scan(boolean operator, byte ins, int p1, int p2) throws Exception {
        boolean isOperatorIns = contains(OPERATOR_INS, ins);
        byte[] response;
        if (operator && isOperatorIns) {
            if (!open) {
                openSession();
            }
            response = operator(ins, p1, p2, new byte[0]);
        } else {
            response = send(ins, p1, p2, new byte[0]);
            if (ins == Constants.INS_OPERATOR_CHALLENGE || ins == Constants.INS_OPERATOR_AUTHENTICATE) {
                open = false; // a new challenge ends the session
            }
        }
        readScalars();
        check(ins, p1, p2, response);
    }

    private void check(byte ins, int p1, int p2, byte[] response) {
        for (int i = 0; i + 16 <= response.length - 2; i++) {
            if (windows.contains(ByteBuffer.wrap(Arrays.copyOfRange(response, i, i + 16)))) {
                fail(String.format("INS %02X P1 %02X P2 %02X answered key material at offset %d", ins, p1, p2, i));
            }
        }
    }

    /** Every private scalar the identities hold now (serving and staged), as 16-byte windows. */
    private void readScalars() {
        Persistent persistent = applet.persistent();
        byte[] s = new byte[32];
        for (byte slot = 0; slot < Constants.MAX_IDENTITIES; slot++) {
            Identity id = persistent.slot(slot);
            try {
                int n = id.privateKey().getS(s, (short) 0);
                addWindows(Arrays.copyOf(s, n));
            } catch (CryptoException e) {
                // no key in this bank
            }
            try {
                int n = ((javacard.security.ECPrivateKey) id.keyPair(true).getPrivate()).getS(s, (short) 0);
                addWindows(Arrays.copyOf(s, n));
            } catch (CryptoException | ISOException e) {
                // no staged key
            }
        }
    }

    private void addWindows(byte[] secret) {
        for (int i = 0; i + 16 <= secret.length; i++) {
            windows.add(ByteBuffer.wrap(Arrays.copyOfRange(secret, i, i + 16)));
        }
    }

    // ---- the operator session, as a host would run it ---------------------------------------

    private void openSession() throws Exception {
        byte[] challenge = send(Constants.INS_OPERATOR_CHALLENGE, 0, 0, new byte[0]);
        expect(0x9000, challenge);
        byte[] nonce = Arrays.copyOf(challenge, 16);
        byte[] cardPoint = Arrays.copyOfRange(challenge, 16, 16 + 65);
        KeyPairGenerator gen = KeyPairGenerator.getInstance("EC");
        gen.initialize(new ECGenParameterSpec("secp256r1"));
        KeyPair eph = gen.generateKeyPair();
        byte[] ownPoint = point((ECPublicKey) eph.getPublic());
        java.security.Signature ecdsa = java.security.Signature.getInstance("SHA256withECDSA");
        ecdsa.initSign(operatorKey.getPrivate());
        ecdsa.update(concat("SE-TLS operator v1".getBytes(), nonce, cardPoint, ownPoint));
        byte[] confirm = send(Constants.INS_OPERATOR_AUTHENTICATE, 0, 0, concat(ownPoint, ecdsa.sign()));
        expect(0x9000, confirm);
        KeyAgreement ecdh = KeyAgreement.getInstance("ECDH");
        ecdh.init(eph.getPrivate());
        ecdh.doPhase(publicKey(cardPoint), true);
        byte[] z = ecdh.generateSecret();
        byte[] prk = hmac(nonce, z);
        byte[] info = "SE-TLS operator session".getBytes();
        macKey = hmac(prk, concat(info, new byte[] {1}));
        encKey = Arrays.copyOf(hmac(prk, concat(macKey, info, new byte[] {2})), 16);
        byte[] expected = Arrays.copyOf(hmac(macKey, concat("card confirm".getBytes(), nonce)), 16);
        assertTrue(Arrays.equals(expected, Arrays.copyOf(confirm, 16)), "the card derived the same keys");
        counter = 0;
        open = true;
    }

    private byte[] operator(byte ins, int p1, int p2, byte[] payload) throws Exception {
        byte[] header = {(byte) (counter >> 8), (byte) counter, CLA, ins, (byte) p1, (byte) p2,
            (byte) (payload.length >> 8), (byte) payload.length};
        byte[] mac = Arrays.copyOf(hmac(macKey, concat(header, payload)), 16);
        counter++;
        byte[] response = send(ins, p1, p2, concat(payload, mac));
        int sw = sw(response);
        if (sw == Sw.SECURITY_NOT_SATISFIED || sw == Sw.OPERATOR_REQUIRED) {
            open = false;
        }
        return response;
    }

    // ---- plumbing -----------------------------------------------------------------------------

    /** One command (short APDU with Le 00), its 61xx parts fetched with GET RESPONSE and joined. */
    private byte[] send(byte ins, int p1, int p2, byte[] data) {
        ByteArrayOutputStream apdu = new ByteArrayOutputStream();
        apdu.write(CLA);
        apdu.write(ins);
        apdu.write(p1);
        apdu.write(p2);
        if (data.length > 0) {
            apdu.write(data.length);
            apdu.write(data, 0, data.length);
        }
        apdu.write(0);
        byte[] response = transmit(apdu.toByteArray());
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        while ((sw(response) & 0xFF00) == 0x6100 && ins != Constants.INS_GET_RESPONSE) {
            joined.write(response, 0, response.length - 2);
            response = transmit(new byte[] {CLA, Constants.INS_GET_RESPONSE, 0, 0, 0});
        }
        joined.write(response, 0, response.length);
        return joined.toByteArray();
    }

    private byte[] transmit(byte[] command) {
        apdus++;
        return sim.transmitCommand(command);
    }

    private static int sw(byte[] response) {
        return ((response[response.length - 2] & 0xFF) << 8) | (response[response.length - 1] & 0xFF);
    }

    private static void expect(int sw, byte[] response) {
        assertEquals(Integer.toHexString(sw), Integer.toHexString(sw(response)));
    }

    private static AID aid() {
        try (FileInputStream in = new FileInputStream(System.getProperty("setls.applet.properties",
                "applet/applet.properties"))) {
            Properties props = new Properties();
            props.load(in);
            byte[] aid = hex(props.getProperty("applet.aid").replace(":", ""));
            return new AID(aid, (short) 0, (byte) aid.length);
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] point(ECPublicKey key) {
        byte[] out = new byte[65];
        out[0] = 4;
        copy32(key.getW().getAffineX(), out, 1);
        copy32(key.getW().getAffineY(), out, 33);
        return out;
    }

    private static void copy32(BigInteger v, byte[] out, int off) {
        byte[] b = v.toByteArray();
        int n = Math.min(b.length, 32);
        System.arraycopy(b, b.length - n, out, off + 32 - n, n);
    }

    private static java.security.PublicKey publicKey(byte[] point) throws Exception {
        AlgorithmParameters params = AlgorithmParameters.getInstance("EC");
        params.init(new ECGenParameterSpec("secp256r1"));
        ECParameterSpec spec = params.getParameterSpec(ECParameterSpec.class);
        ECPoint w = new ECPoint(new BigInteger(1, Arrays.copyOfRange(point, 1, 33)),
                new BigInteger(1, Arrays.copyOfRange(point, 33, 65)));
        return KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(w, spec));
    }

    private static byte[] hmac(byte[] key, byte[] data) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        return mac.doFinal(data);
    }

    private static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.write(p, 0, p.length);
        }
        return out.toByteArray();
    }

    private static boolean contains(byte[] set, byte value) {
        for (byte b : set) {
            if (b == value) {
                return true;
            }
        }
        return false;
    }

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
