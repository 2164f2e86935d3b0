package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import javacard.security.RandomData;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The arena's region map is honest. For each phase of the applet (a curve check, an HMAC, a PRF,
 * a record protected and unprotected with each suite), everything the map says the phase does
 * not use is filled with a pattern, and the phase must leave it intact; the scratch it does use is
 * filled with noise first, so the phase must not read what an earlier APDU left there. Then the
 * map itself: every region inside its array, session state shared with nothing, uses that run at
 * the same time on different bytes.
 */
class TransientsTest {
    private static final byte BYTE_PATTERN = (byte) 0xA5;
    private static final short SHORT_PATTERN = (short) 0x5AC3;
    private static final Object REF_PATTERN = new Object();

    private static Transients ram;
    private static HmacSha256 hmac;
    private static TlsPrf prf;
    private static PointCheck curve;
    private static RecordCipher cipher;
    private static final Random noise = new Random(1338);

    @BeforeAll
    static void card() {
        new Simulator(); // a Java Card runtime for JCSystem's transient arrays and the crypto
        ram = new Transients();
        hmac = new HmacSha256(ram);
        prf = new TlsPrf(hmac, ram);
        curve = new PointCheck(ram);
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        cipher = new RecordCipher(new AesGcm(ram), new AesCcm(ram), hmac, random, new OpCounters(ram), ram);
    }

    private static short s(int v) {
        return (short) v;
    }

    /** A region of the arena: which array, where, how long, and whether it outlives an APDU. */
    record Region(String name, boolean shorts, int off, int size, boolean session) {
        boolean overlaps(Region o) {
            return shorts == o.shorts && off < o.off + o.size && o.off < off + size;
        }

        @Override
        public String toString() {
            return name + (shorts ? " shorts[" : " bytes[") + off + ", " + (off + size) + ")";
        }
    }

    private static Region bytes(String name, int off, int size, boolean session) {
        return new Region(name, false, off, size, session);
    }

    private static Region shorts(String name, int off, int size, boolean session) {
        return new Region(name, true, off, size, session);
    }

    // The map, as Transients declares it.
    static final Region EAP_NAME = bytes("EAP_NAME", Transients.EAP_NAME, Transients.EAP_NAME_SIZE, true);
    static final Region TLS_RANDOMS = bytes("TLS_RANDOMS", Transients.TLS_RANDOMS, Transients.TLS_RANDOMS_SIZE, true);
    static final Region RECORD_KEYS = bytes("RECORD_KEYS", Transients.RECORD_KEYS, Transients.RECORD_KEYS_SIZE, true);
    static final Region RECORD_SEQ = bytes("RECORD_SEQ", Transients.RECORD_SEQ, Transients.RECORD_SEQ_SIZE, true);
    static final Region HELLO_FIELD = bytes("HELLO_FIELD", Transients.HELLO_FIELD, Transients.HELLO_FIELD_SIZE, true);
    static final Region TLS_FINISHED = bytes("TLS_FINISHED", Transients.TLS_FINISHED, Transients.TLS_FINISHED_SIZE, true);
    static final Region HANDSHAKE_KEYS = bytes("HANDSHAKE_KEYS", Transients.HANDSHAKE_KEYS, Transients.HANDSHAKE_KEYS_SIZE, false);
    static final Region RECORD_SCRATCH = bytes("RECORD_SCRATCH", Transients.RECORD_SCRATCH, Transients.RECORD_SCRATCH_SIZE, false);
    static final Region HMAC_PAD = bytes("HMAC_PAD", Transients.HMAC_PAD, Transients.HMAC_PAD_SIZE, false);
    static final Region PRF_A = bytes("PRF_A", Transients.PRF_A, Transients.PRF_A_SIZE, false);
    static final Region GCM_STATE = bytes("GCM_STATE", Transients.GCM_STATE, Transients.GCM_STATE_SIZE, false);
    static final Region CCM_STATE = bytes("CCM_STATE", Transients.CCM_STATE, Transients.CCM_STATE_SIZE, false);
    static final Region EAP_STATE = shorts("EAP_STATE", Transients.EAP_STATE, Transients.EAP_STATE_SIZE, true);
    static final Region INPUT_STATE = shorts("INPUT_STATE", Transients.INPUT_STATE, Transients.INPUT_STATE_SIZE, true);
    static final Region RESPONSE_STATE = shorts("RESPONSE_STATE", Transients.RESPONSE_STATE, Transients.RESPONSE_STATE_SIZE, true);
    static final Region TLS_STATE = shorts("TLS_STATE", Transients.TLS_STATE, Transients.TLS_STATE_SIZE, true);
    static final Region RECORD_KIND = shorts("RECORD_KIND", Transients.RECORD_KIND, Transients.RECORD_KIND_SIZE, true);
    static final Region HELLO_STATE = shorts("HELLO_STATE", Transients.HELLO_STATE, Transients.HELLO_STATE_SIZE, true);
    static final Region CURVE = shorts("CURVE", Transients.CURVE, Transients.CURVE_SIZE, false);
    static final Region GHASH = shorts("GHASH", Transients.GHASH, Transients.GHASH_SIZE, false);
    static final Region GCM_LENGTHS = shorts("GCM_LENGTHS", Transients.GCM_LENGTHS, Transients.GCM_LENGTHS_SIZE, false);
    static final Region CCM_PARAMS = shorts("CCM_PARAMS", Transients.CCM_PARAMS, Transients.CCM_PARAMS_SIZE, false);
    static final Region PIECE_OWNER = shorts("PIECE_OWNER", Transients.PIECE_OWNER, Transients.PIECE_OWNER_SIZE, true);
    static final Region RECORD_PIECE = shorts("RECORD_PIECE", Transients.RECORD_PIECE, Transients.RECORD_PIECE_SIZE, true);
    static final Region OPERATOR_SECRETS = bytes("OPERATOR_SECRETS", Transients.OPERATOR_SECRETS,
            Transients.OPERATOR_SECRETS_SIZE, true);
    static final Region OPERATOR_WORK = bytes("OPERATOR_WORK", Transients.OPERATOR_WORK, Transients.OPERATOR_WORK_SIZE, false);
    static final Region OPERATOR_STATE = shorts("OPERATOR_STATE", Transients.OPERATOR_STATE,
            Transients.OPERATOR_STATE_SIZE, true);
    static final Region EPHEMERAL = bytes("EPHEMERAL", Transients.EPHEMERAL, Transients.EPHEMERAL_SIZE, true);
    static final Region SESSION_SLOTS = bytes("SESSION_SLOTS", Transients.SESSION_SLOTS, Transients.SESSION_SLOTS_SIZE, true);
    static final Region HANDSHAKE_SLOTS = bytes("HANDSHAKE_SLOTS", Transients.HANDSHAKE_SLOTS,
            Transients.HANDSHAKE_SLOTS_SIZE, true);
    static final Region EAP_PACKET = shorts("EAP_PACKET", Transients.EAP_PACKET, Transients.EAP_PACKET_SIZE, true);
    static final Region SESSIONS_STATE = shorts("SESSIONS_STATE", Transients.SESSIONS_STATE,
            Transients.SESSIONS_STATE_SIZE, true);
    static final Region SESSION_LINK = shorts("SESSION_LINK", Transients.SESSION_LINK, Transients.SESSION_LINK_SIZE, true);
    static final Region TLS_HANDSHAKE = shorts("TLS_HANDSHAKE", Transients.TLS_HANDSHAKE, Transients.TLS_HANDSHAKE_SIZE,
            true);
    static final Region SESSION_SHORT_SLOTS = shorts("SESSION_SHORT_SLOTS", Transients.SESSION_SHORT_SLOTS,
            Transients.SESSION_SHORT_SLOTS_SIZE, true);
    static final Region HANDSHAKE_SHORT_SLOTS = shorts("HANDSHAKE_SHORT_SLOTS", Transients.HANDSHAKE_SHORT_SLOTS,
            Transients.HANDSHAKE_SHORT_SLOTS_SIZE, true);
    static final Region CLIENT_AUTH_HASH = bytes("CLIENT_AUTH_HASH", Transients.CLIENT_AUTH_HASH,
            Transients.CLIENT_AUTH_HASH_SIZE, false);
    static final Region CLOCK = bytes("CLOCK", Transients.CLOCK, Transients.CLOCK_SIZE, true);
    static final Region CERT_WORK = bytes("CERT_WORK", Transients.CERT_WORK, Transients.CERT_WORK_SIZE, false);
    static final Region CLIENT_AUTH_STATE = shorts("CLIENT_AUTH_STATE", Transients.CLIENT_AUTH_STATE,
            Transients.CLIENT_AUTH_STATE_SIZE, true);
    static final Region CERT_FIELDS = shorts("CERT_FIELDS", Transients.CERT_FIELDS, Transients.CERT_FIELDS_SIZE, false);
    static final Region DTLS_WINDOW = bytes("DTLS_WINDOW", Transients.DTLS_WINDOW, Transients.DTLS_WINDOW_SIZE, true);
    static final Region DTLS_MODE = shorts("DTLS_MODE", Transients.DTLS_MODE, Transients.DTLS_MODE_SIZE, true);
    static final Region DTLS_HANDSHAKE = shorts("DTLS_HANDSHAKE", Transients.DTLS_HANDSHAKE,
            Transients.DTLS_HANDSHAKE_SIZE, true);
    static final List<Region> ALL = List.of(CLIENT_AUTH_HASH, CLOCK, CERT_WORK, CLIENT_AUTH_STATE, CERT_FIELDS, EAP_NAME, OPERATOR_SECRETS, TLS_RANDOMS, RECORD_KEYS, RECORD_SEQ,
            HELLO_FIELD, TLS_FINISHED, EPHEMERAL, SESSION_SLOTS, HANDSHAKE_SLOTS, HANDSHAKE_KEYS, OPERATOR_WORK,
            RECORD_SCRATCH, HMAC_PAD, PRF_A, GCM_STATE, CCM_STATE, EAP_STATE, INPUT_STATE, RESPONSE_STATE, EAP_PACKET,
            SESSIONS_STATE, OPERATOR_STATE, TLS_STATE, RECORD_KIND, SESSION_LINK, TLS_HANDSHAKE, HELLO_STATE,
            SESSION_SHORT_SLOTS, HANDSHAKE_SHORT_SLOTS, CURVE, GHASH, GCM_LENGTHS, CCM_PARAMS, PIECE_OWNER,
            RECORD_PIECE, DTLS_WINDOW, DTLS_MODE, DTLS_HANDSHAKE);
    /** The active session's and handshake's areas: what Sessions swaps with the slots. */
    static final Region[] SESSION_AREA = {RECORD_KEYS, RECORD_SEQ, DTLS_WINDOW, EAP_STATE, TLS_STATE, RECORD_KIND,
        SESSION_LINK, DTLS_MODE};
    static final Region[] SESSION_OWN = {RECORD_KEYS, RECORD_SEQ, DTLS_WINDOW, EAP_STATE, TLS_STATE, RECORD_KIND,
        DTLS_MODE};
    static final Region[] HANDSHAKE_AREA = {TLS_RANDOMS, HELLO_FIELD, TLS_FINISHED, EPHEMERAL, TLS_HANDSHAKE,
        HELLO_STATE, CLIENT_AUTH_STATE, DTLS_HANDSHAKE};

    // ---- running a phase against the map ------------------------------------------------------

    /**
     * Fills the arena: the phase's scratch with noise, its session regions left as they are,
     * everything else with the pattern. Returns the expected content of the arena afterwards
     * outside the phase's regions.
     */
    private static Object[] prepare(Region... live) {
        boolean[] liveBytes = new boolean[Transients.BYTES_SIZE];
        boolean[] liveShorts = new boolean[Transients.SHORTS_SIZE];
        for (Region r : live) {
            boolean[] mask = r.shorts ? liveShorts : liveBytes;
            for (int i = r.off; i < r.off + r.size; i++) {
                mask[i] = true;
                if (!r.session) {
                    if (r.shorts) {
                        ram.shorts[i] = (short) noise.nextInt();
                    } else {
                        ram.bytes[i] = (byte) noise.nextInt();
                    }
                }
            }
        }
        for (int i = 0; i < liveBytes.length; i++) {
            if (!liveBytes[i]) {
                ram.bytes[i] = BYTE_PATTERN;
            }
        }
        for (int i = 0; i < liveShorts.length; i++) {
            if (!liveShorts[i]) {
                ram.shorts[i] = SHORT_PATTERN;
            }
        }
        Arrays.fill(ram.refs, REF_PATTERN);
        return new Object[] {liveBytes, liveShorts};
    }

    private static void assertUntouched(Object[] masks, String phase) {
        assertUntouched(masks, phase, true);
    }

    private static void assertUntouched(Object[] masks, String phase, boolean refs) {
        boolean[] liveBytes = (boolean[]) masks[0];
        boolean[] liveShorts = (boolean[]) masks[1];
        for (int i = 0; i < liveBytes.length; i++) {
            if (!liveBytes[i]) {
                assertEquals(BYTE_PATTERN, ram.bytes[i], phase + " wrote bytes[" + i + "] (" + owner(false, i) + ")");
            }
        }
        for (int i = 0; i < liveShorts.length; i++) {
            if (!liveShorts[i]) {
                assertEquals(SHORT_PATTERN, ram.shorts[i], phase + " wrote shorts[" + i + "] (" + owner(true, i) + ")");
            }
        }
        for (Object ref : refs ? ram.refs : new Object[0]) {
            assertSame(REF_PATTERN, ref, phase + " wrote a reference");
        }
    }

    private static String owner(boolean shorts, int i) {
        List<String> names = new ArrayList<>();
        for (Region r : ALL) {
            if (r.shorts == shorts && r.off <= i && i < r.off + r.size) {
                names.add(r.name);
            }
        }
        return names.isEmpty() ? "no region" : String.join(", ", names);
    }

    // ---- the phases ---------------------------------------------------------------------------

    @Test
    void theCurveCheckUsesOnlyItsRegion() {
        Object[] masks = prepare(CURVE);
        assertTrue(curve.isOnCurve(P256.G, s(0)));
        byte[] off = P256.G.clone();
        off[64] ^= 1;
        prepare(CURVE);
        assertFalse(curve.isOnCurve(off, s(0)));
        assertUntouched(masks, "PointCheck");
    }

    @Test
    void theClientHelloParserUsesOnlyItsRegionsAcrossApdus() {
        Persistent persistent = ClientHelloParserTest.persistent(ram);
        byte[] names = ClientHelloParserTest.sniList("device.example.com");
        persistent.slot((byte) 1).setSni(names, s(0), s(names.length));
        ClientHelloParser parser = new ClientHelloParser(ram, new TlsAlert(), persistent, true, true,
                ClientHelloParserTest.cache(ram));
        byte[] message = ClientHelloParserTest.hello(ClientHelloParserTest.SUITES,
                ClientHelloParserTest.usualExtensions(ClientHelloParserTest.serverName(0, "device.example.com"),
                        new byte[] {0, 21, 1, 40}, new byte[296]));
        Region[] live = {HELLO_STATE, HELLO_FIELD, TLS_RANDOMS, DTLS_MODE};
        prepare(live);
        ram.shorts[Transients.DTLS_MODE] = 0; // a TLS session
        parser.reset();
        // Pieces of 7 bytes, each as one APDU would bring it: the arena outside the parser's
        // session regions (and client_random) is whatever other APDUs left there in between.
        for (int at = 0; at < message.length; at += 7) {
            Object[] masks = prepare(live);
            int n = Math.min(7, message.length - at);
            parser.feed(message, s(at), s(n));
            assertUntouched(masks, "ClientHelloParser");
        }
        assertTrue(parser.done());
        assertEquals(1 | 8, parser.suites());
        assertTrue(parser.serverNameMatches((byte) 1), "the host_name matched, 7 bytes at a time");
        assertArrayEquals(ClientHelloParserTest.RANDOM, Arrays.copyOfRange(ram.bytes, Transients.TLS_RANDOMS,
                Transients.TLS_RANDOMS + 32));
    }

    @Test
    void anHmacUsesOnlyItsPad() throws Exception {
        byte[] key = new byte[40];
        byte[] data = new byte[300];
        noise.nextBytes(key);
        noise.nextBytes(data);
        Object[] masks = prepare(HMAC_PAD);
        hmac.init(key, s(0), s(key.length));
        hmac.update(data, s(0), s(100));
        byte[] out = new byte[32];
        hmac.doFinal(data, s(100), s(200), out, s(0));
        assertUntouched(masks, "HmacSha256");
        Mac jdk = Mac.getInstance("HmacSHA256");
        jdk.init(new SecretKeySpec(key, "HmacSHA256"));
        assertArrayEquals(jdk.doFinal(data), out);
    }

    @Test
    void thePrfUsesOnlyHmacAndA() throws Exception {
        byte[] secret = new byte[48];
        byte[] label = "key expansion".getBytes("US-ASCII");
        byte[] seed = new byte[64];
        noise.nextBytes(secret);
        noise.nextBytes(seed);
        Object[] masks = prepare(HMAC_PAD, PRF_A);
        byte[] out = new byte[96];
        prf.derive(secret, s(0), s(48), label, s(0), s(label.length), seed, s(0), s(32), seed, s(32), s(32),
                out, s(0), s(out.length));
        assertUntouched(masks, "TlsPrf");
        ByteArrayOutputStream labelSeed = new ByteArrayOutputStream();
        labelSeed.write(label);
        labelSeed.write(seed);
        assertArrayEquals(pSha256(secret, labelSeed.toByteArray(), out.length), out);
    }

    /** P_SHA256 (RFC 5246 section 5) on the JDK. */
    private static byte[] pSha256(byte[] secret, byte[] seed, int n) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] a = seed;
        while (out.size() < n) {
            a = mac.doFinal(a);
            mac.update(a);
            out.write(mac.doFinal(seed));
        }
        return Arrays.copyOf(out.toByteArray(), n);
    }

    @Test
    void recordsOfEachSuiteUseOnlyTheirRegions() {
        Region[] session = {RECORD_KEYS, RECORD_SEQ, RECORD_KIND, RECORD_PIECE, DTLS_MODE, DTLS_WINDOW};
        record Suite(short id, Region... scratch) {
        }
        Suite[] suites = {
            new Suite(Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, RECORD_SCRATCH, GCM_STATE, GHASH, GCM_LENGTHS),
            new Suite(Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, RECORD_SCRATCH, CCM_STATE, CCM_PARAMS),
            new Suite(Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, RECORD_SCRATCH, CCM_STATE, CCM_PARAMS),
            new Suite(Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, RECORD_SCRATCH, HMAC_PAD),
        };
        for (Suite suite : suites) {
            // The client's keys equal the server's, so a record the card writes it can read back.
            byte[] half = new byte[48];
            noise.nextBytes(half);
            byte[] keyBlock = new byte[96];
            int size = RecordCipher.keyBlockSize(suite.id);
            if (suite.id == Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256) {
                System.arraycopy(half, 0, keyBlock, 0, 32);   // MAC keys
                System.arraycopy(half, 0, keyBlock, 32, 32);
                System.arraycopy(half, 32, keyBlock, 64, 16); // AES keys
                System.arraycopy(half, 32, keyBlock, 80, 16);
            } else {
                System.arraycopy(half, 0, keyBlock, 0, 16);   // AES keys
                System.arraycopy(half, 0, keyBlock, 16, 16);
                System.arraycopy(half, 16, keyBlock, 32, 4);  // implicit IVs
                System.arraycopy(half, 16, keyBlock, 36, 4);
            }
            assertTrue(size <= keyBlock.length);
            Region[] live = new Region[session.length + suite.scratch.length];
            System.arraycopy(session, 0, live, 0, session.length);
            System.arraycopy(suite.scratch, 0, live, session.length, suite.scratch.length);
            String name = String.format("records of %04X", suite.id);
            for (int length : new int[] {0, 1, 100, 1000}) {
                prepare(live);                  // the whole arena as another APDU might leave it
                ram.shorts[Transients.DTLS_MODE] = 0; // a TLS session
                cipher.start(suite.id, keyBlock, s(0));
                byte[] plain = new byte[length];
                noise.nextBytes(plain);
                byte[] buf = new byte[7 + 5 + 16 + length + 64];
                int off = 7;
                for (int record = 0; record < 2; record++) { // the second one with sequence number 1
                    Object[] masks = prepare(live);
                    short prefix = cipher.prefixLength();
                    System.arraycopy(plain, 0, buf, off + prefix, length);
                    short n = cipher.protect(Tls.CONTENT_APPLICATION_DATA, buf, s(off), s(length));
                    assertUntouched(masks, name + ", protect");
                    masks = prepare(live);
                    short got = cipher.unprotect(buf, s(off));
                    assertUntouched(masks, name + ", unprotect");
                    assertEquals(length, got, name + ": the record authenticates (" + n + " bytes)");
                    assertArrayEquals(plain, Arrays.copyOfRange(buf, off + 5, off + 5 + length), name);
                }
                // The same in pieces across "APDUs": protected in pieces of 48 bytes, unprotected
                // in pieces of 32 (each in a fresh buffer, the arena kept), read back whole.
                System.arraycopy(plain, 0, buf, 0, length);
                Object[] masks = prepare(live);
                byte[] record = new byte[buf.length];
                short w = cipher.begin(Tls.CONTENT_APPLICATION_DATA, s(length), record, s(0));
                int done = 0;
                for (; length - done > 48; done += 48) {
                    byte[] piece = Arrays.copyOfRange(plain, done, done + 48);
                    assertEquals(48, cipher.takePlain(piece, s(0), s(48)));
                    System.arraycopy(piece, 0, record, w, 48);
                    w += 48;
                }
                byte[] last = Arrays.copyOf(Arrays.copyOfRange(plain, done, length), length - done + 48);
                short tail = cipher.finishProtect(last, s(0), s(length - done));
                System.arraycopy(last, 0, record, w, tail);
                w += tail;
                assertUntouched(masks, name + ", protect in pieces");
                int fragment = w - 5;
                masks = prepare(live);
                assertTrue(cipher.open(record, s(0), record, s(5 + fragment - Math.min(32, fragment))) >= 0, name);
                java.io.ByteArrayOutputStream got = new java.io.ByteArrayOutputStream();
                for (int at = 5; at < w; at += 32) {
                    byte[] piece = Arrays.copyOfRange(record, at, Math.min(w, at + 32));
                    short k = cipher.take(piece, s(0), s(piece.length));
                    got.write(piece, 0, k);
                }
                assertEquals(length, cipher.finish(), name + ": in pieces, the record authenticates");
                assertUntouched(masks, name + ", unprotect in pieces");
                assertArrayEquals(plain, got.toByteArray(), name + " in pieces");
            }
            cipher.clear();
        }
    }

    /** Fills the regions with a value. */
    private static void fill(Region[] regions, int value) {
        for (Region r : regions) {
            for (int i = r.off; i < r.off + r.size; i++) {
                if (r.shorts) {
                    ram.shorts[i] = (short) value;
                } else {
                    ram.bytes[i] = (byte) value;
                }
            }
        }
    }

    private static void assertFilled(Region[] regions, int value, String what) {
        for (Region r : regions) {
            for (int i = r.off; i < r.off + r.size; i++) {
                int got = r.shorts ? ram.shorts[i] : ram.bytes[i];
                assertEquals(r.shorts ? (short) value : (byte) value, got, what + ": " + r + " at " + i);
            }
        }
    }

    @Test
    void sessionsSwapTheirStateThroughTheirSlotsAndNothingElse() {
        Sessions sessions = new Sessions(ram);
        Region[] live = {RECORD_KEYS, RECORD_SEQ, EAP_STATE, TLS_STATE, RECORD_KIND, SESSION_LINK, TLS_RANDOMS,
            HELLO_FIELD, TLS_FINISHED, EPHEMERAL, TLS_HANDSHAKE, HELLO_STATE, SESSION_SLOTS, HANDSHAKE_SLOTS,
            SESSION_SHORT_SLOTS, HANDSHAKE_SHORT_SLOTS, SESSIONS_STATE, CLIENT_AUTH_STATE,
            DTLS_MODE, DTLS_WINDOW, DTLS_HANDSHAKE};
        Object[] masks = prepare(live);
        for (Region r : live) {
            fill(new Region[] {r}, 0);
        }
        Arrays.fill(ram.refs, Transients.SESSION_REFS, Transients.REFS_SIZE, null);
        Object[] handlers = new Object[Sessions.SESSIONS];
        for (short h = 0; h < Sessions.SESSIONS; h++) {
            sessions.use(h);
            fill(SESSION_AREA, 0x10 + h);   // the session's own state, SESSION_LINK included ...
            ram.shorts[Transients.SESSION_LINK] = 0;
            handlers[h] = new Object();
            ram.refs[Transients.EAP_HANDLER] = handlers[h];
            if (h < Sessions.HANDSHAKES) {  // ... and, for the first two, a handshake
                assertEquals(h, sessions.claimHandshake());
                fill(HANDSHAKE_AREA, 0x40 + h);
            }
        }
        for (short h = (short) (Sessions.SESSIONS - 1); h >= 0; h--) {   // back, in another order
            sessions.use(h);
            assertSame(handlers[h], ram.refs[Transients.EAP_HANDLER]);
            assertFilled(SESSION_OWN, 0x10 + h, "session " + h);
            if (h < Sessions.HANDSHAKES) {
                assertEquals(h, sessions.handshakeSlot());
                assertFilled(HANDSHAKE_AREA, 0x40 + h, "handshake of session " + h);
            } else {
                assertEquals(-1, sessions.handshakeSlot());
            }
        }
        sessions.use((short) 1);
        sessions.releaseHandshake();                     // its slot and its stored copy are wiped
        assertFilled(HANDSHAKE_AREA, 0, "a released handshake");
        sessions.clearActive();                          // the session is over
        assertFilled(SESSION_AREA, 0, "a closed session");
        sessions.use((short) 0);
        assertFilled(HANDSHAKE_AREA, 0x40, "the other handshake");
        assertUntouched(masks, "Sessions", false);
    }

    @Test
    void resettingTheSessionsLeavesTheOperatorSessionAlone() {
        // The card's one operator session is card-wide: SELECT ends it through OperatorSession, and
        // Sessions, which forgets the TLS sessions, never touches its regions.
        Sessions sessions = new Sessions(ram);
        List<Region> live = new ArrayList<>(ALL);
        live.removeAll(List.of(OPERATOR_SECRETS, OPERATOR_STATE, OPERATOR_WORK, HANDSHAKE_KEYS));
        Object[] masks = prepare(live.toArray(new Region[0]));
        sessions.resetAll();
        assertUntouched(masks, "Sessions.resetAll", false);
    }

    // ---- the map ------------------------------------------------------------------------------

    @Test
    void everyRegionIsInsideItsArray() {
        for (Region r : ALL) {
            int end = r.shorts ? Transients.SHORTS_SIZE : Transients.BYTES_SIZE;
            assertTrue(r.off >= 0 && r.size > 0 && r.off + r.size <= end, r.toString());
        }
        assertEquals(Transients.BYTES_SIZE, ram.bytes.length);
        assertEquals(Transients.SHORTS_SIZE, ram.shorts.length);
        assertEquals(Transients.REFS_SIZE, ram.refs.length);
        assertEquals(OpCounters.COUNT + SessionCache.STATE_SHORTS, ram.counters.length);
        // The overlays fit the room the chains reserve for them.
        assertTrue(Transients.GCM_STATE_SIZE + Transients.CCM_STATE_SIZE <= Transients.OVERLAY_SIZE);
        assertTrue(Transients.GHASH_SIZE + Transients.GCM_LENGTHS_SIZE + Transients.CCM_PARAMS_SIZE
                <= Transients.SHORT_SCRATCH_SIZE);
        assertTrue(Transients.OPERATOR_WORK_SIZE <= Transients.HANDSHAKE_KEYS_SIZE);
    }

    @Test
    void sessionStateSharesNothing() {
        for (Region r : ALL) {
            if (!r.session) {
                continue;
            }
            for (Region o : ALL) {
                if (o != r) {
                    assertFalse(r.overlaps(o), r + " overlaps " + o);
                }
            }
        }
    }

    @Test
    void usesThatRunTogetherUseDifferentBytes() {
        // Flight 3: the key derivation, then the client's Finished unprotected and the server's
        // protected, while the master secret and the hashes wait in HANDSHAKE_KEYS.
        Region[][] together = {
            {HANDSHAKE_KEYS, HMAC_PAD, PRF_A},
            {HANDSHAKE_KEYS, RECORD_SCRATCH, GCM_STATE, GHASH, GCM_LENGTHS},
            {HANDSHAKE_KEYS, RECORD_SCRATCH, CCM_STATE, CCM_PARAMS},
            {HANDSHAKE_KEYS, RECORD_SCRATCH, HMAC_PAD},
            {HANDSHAKE_KEYS, CURVE},
            // An operator command: Z, the PRK and a decrypted secret wait in OPERATOR_WORK while
            // the HMAC (HKDF, the command's MAC) runs; the session's keys are in OPERATOR_SECRETS.
            {OPERATOR_WORK, HMAC_PAD, OPERATOR_SECRETS},
        };
        for (Region[] set : together) {
            for (int i = 0; i < set.length; i++) {
                for (int j = i + 1; j < set.length; j++) {
                    assertFalse(set[i].overlaps(set[j]), set[i] + " overlaps " + set[j]);
                }
            }
        }
    }
}
