package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Random;
import javacard.security.RandomData;
import javacardx.crypto.Cipher;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The streaming ClientHello parser: any split of the bytes gives the same result, a hello of any
 * legal size parses (24-bit lengths included), and every malformation is the alert RFC 5246 names
 * for it, before anything is negotiated; server_name's host_name is matched against the
 * identities' SNI names byte by byte, however it is split.
 */
class ClientHelloParserTest {
    private static Transients ram;
    private static Persistent persistent;
    private static ClientHelloParser parser;

    @BeforeAll
    static void card() {
        new Simulator();
        ram = new Transients();
        persistent = persistent(ram);
        parser = new ClientHelloParser(ram, new TlsAlert(), persistent, true, false, cache(ram)); // SHA-384 yes, SHA-512 no
    }

    /** The session cache, as install() builds it (its ticket key drawn). */
    static SessionCache cache(Transients ram) {
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        return new SessionCache(new AesCcm(ram), random, new OpCounters(ram), ram);
    }

    /** The card's persistent state, as install() builds it: the identities whose SNI names are matched. */
    static Persistent persistent(Transients ram) {
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        Cipher cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
        return new Persistent(new PskStore(cbc, random, ram.bytes, Transients.OPERATOR_WORK));
    }

    /** An SNI list as PUT DATA SNI takes it: length || name, repeated. */
    static byte[] sniList(String... names) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (String name : names) {
            byte[] b = name.getBytes(StandardCharsets.US_ASCII);
            out.write(b.length);
            out.writeBytes(b);
        }
        return out.toByteArray();
    }

    /** server_name (RFC 6066 3) with these (name_type, name) entries. */
    static byte[] serverName(Object... typesAndNames) {
        ByteArrayOutputStream list = new ByteArrayOutputStream();
        for (int i = 0; i < typesAndNames.length; i += 2) {
            byte[] name = ((String) typesAndNames[i + 1]).getBytes(StandardCharsets.US_ASCII);
            list.write((Integer) typesAndNames[i]);
            list.writeBytes(u16(name.length));
            list.writeBytes(name);
        }
        byte[] body = list.toByteArray();
        return extension(0, cat(u16(body.length), body));
    }

    // ---- building hellos ----------------------------------------------------------------------

    private static byte[] u16(int v) {
        return new byte[] {(byte) (v >> 8), (byte) v};
    }

    private static byte[] cat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    private static byte[] extension(int type, byte[] body) {
        return cat(u16(type), u16(body.length), body);
    }

    private static byte[] list16(int... values) {
        byte[] out = new byte[2 + 2 * values.length];
        out[0] = (byte) (values.length * 2 >> 8);
        out[1] = (byte) (values.length * 2);
        for (int i = 0; i < values.length; i++) {
            out[2 + 2 * i] = (byte) (values[i] >> 8);
            out[3 + 2 * i] = (byte) values[i];
        }
        return out;
    }

    static final byte[] RANDOM = new byte[32];

    static {
        new Random(1).nextBytes(RANDOM);
    }

    /** A ClientHello message with these suites and extensions (the block omitted if null). */
    static byte[] hello(int[] suites, byte[] extensions) {
        byte[] body = cat(new byte[] {3, 3}, RANDOM, new byte[] {4, 9, 9, 9, 9}, list16(suites),
                new byte[] {1, 0}, extensions == null ? new byte[0] : cat(u16(extensions.length), extensions));
        return cat(new byte[] {1, (byte) (body.length >> 16), (byte) (body.length >> 8), (byte) body.length}, body);
    }

    /** supported_groups, ec_point_formats, signature_algorithms, renegotiation_info, EMS, then more. */
    static byte[] usualExtensions(byte[]... more) {
        return cat(extension(10, list16(29, 23)), extension(11, new byte[] {1, 0}),
                extension(13, list16(0x0203, 0x0603, 0x0503, 0x0403)), extension(0xFF01, new byte[] {0}),
                extension(23, new byte[0]), cat(more));
    }

    static final int[] SUITES = {0xC02F, 0xC023, 0xC02B, 0x00FF};

    // ---- feeding ------------------------------------------------------------------------------

    /** Feeds the message in pieces of the given sizes (cycled); returns the bytes taken in all. */
    private static int feed(byte[] message, int... sizes) {
        parser.reset();
        int at = 0;
        int taken = 0;
        for (int k = 0; at < message.length; k++) {
            int n = Math.min(sizes[k % sizes.length], message.length - at);
            // Each piece in its own buffer, at an offset, as a record's fragment would be.
            byte[] buf = new byte[n + 7];
            System.arraycopy(message, at, buf, 7, n);
            taken += parser.feed(buf, (short) 7, (short) n);
            at += n;
        }
        return taken;
    }

    private static short alertOf(byte[] message, int... sizes) {
        TlsAlert alert = assertThrows(TlsAlert.class, () -> feed(message, sizes),
                () -> Arrays.toString(message) + " in pieces of " + Arrays.toString(sizes));
        return alert.getReason();
    }

    @Test
    void anySplitGivesTheSameResult() {
        byte[] message = hello(SUITES, usualExtensions(extension(21, new byte[20])));
        for (int[] sizes : new int[][] {{message.length}, {1}, {2}, {3}, {5, 1, 7}, {31, 33}}) {
            assertEquals(message.length, feed(message, sizes));
            assertTrue(parser.done());
            assertEquals(0x0303, parser.version());
            assertEquals(1 | 8, parser.suites(), "GCM and CBC of the card's suites");
            assertEquals(Tls.SIG_ECDSA_SHA384, parser.signature(), "the client's first the card can sign with");
            short facts = parser.facts();
            for (short f : new short[] {ClientHelloParser.F_SCSV, ClientHelloParser.F_RENEGOTIATION_INFO,
                ClientHelloParser.F_EXTENDED_MASTER_SECRET, ClientHelloParser.F_POINT_FORMATS,
                ClientHelloParser.F_UNCOMPRESSED, ClientHelloParser.F_GROUPS, ClientHelloParser.F_SECP256R1,
                ClientHelloParser.F_SIGNATURES, ClientHelloParser.F_NULL_COMPRESSION}) {
                assertTrue((facts & f) != 0, "fact " + f);
            }
            assertEquals(0, facts & ClientHelloParser.F_RENEGOTIATION_NOT_EMPTY);
            assertArrayEquals(RANDOM, Arrays.copyOfRange(ram.bytes, Transients.TLS_RANDOMS,
                    Transients.TLS_RANDOMS + 32));
        }
    }

    @Test
    void theParserStopsWhereTheHelloEnds() {
        byte[] message = hello(SUITES, usualExtensions());
        byte[] more = cat(message, new byte[] {16, 0, 0, 0});
        parser.reset();
        assertEquals(message.length, parser.feed(more, (short) 0, (short) more.length));
        assertTrue(parser.done());
    }

    @Test
    void helloesOfAnySizeParse() {
        // Without extensions; with an empty block; up to a full 2^16-1 extensions block and
        // 2^15-1 suites: a body beyond 2^16 (the 24-bit length).
        assertEquals(feed(hello(SUITES, null), 1), hello(SUITES, null).length);
        assertTrue(parser.done());
        assertEquals(feed(hello(SUITES, new byte[0]), 2), hello(SUITES, new byte[0]).length);
        byte[] usual = usualExtensions();
        byte[] big = hello(SUITES, cat(usual, extension(21, new byte[0xFFFF - usual.length - 4])));
        assertEquals(big.length, feed(big, 16384));
        assertTrue(parser.done());
        int[] many = new int[0x7FFF];
        for (int i = 0; i < many.length; i++) {
            many[i] = 0x1300 + (i & 0xFF);
        }
        many[many.length - 1] = 0xC0AC;
        byte[] huge = hello(many, cat(usual, extension(21, new byte[0xFFFF - usual.length - 4])));
        assertTrue(huge.length > 0x20000, "a body of " + huge.length + " bytes");
        assertEquals(huge.length, feed(huge, 16384, 1, 333));
        assertTrue(parser.done());
        assertEquals(2, parser.suites());
    }

    @Test
    void aBodyLongerThanAnyHelloIsADecodeError() {
        byte[] header = {1, 2, 1, 0x45}; // 0x020145: one more than the longest ClientHello
        assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(header, 4));
    }

    @Test
    void malformedHelloesAreDecodeErrorsWhateverTheyLack() {
        int[] rsaOnly = {0xC02F, 0x009C};
        byte[][] malformed = {
            hello(rsaOnly, cat(extension(10, list16(23)), extension(23, new byte[] {0}))), // non-empty EMS
            hello(rsaOnly, cat(extension(10, new byte[] {0, 4, 0, 23}))),                // truncated groups
            hello(rsaOnly, cat(extension(10, new byte[] {0, 2, 0, 23, 0}))),             // overlong groups
            hello(rsaOnly, cat(extension(10, new byte[] {0, 3, 0, 23, 0}))),             // odd groups
            hello(rsaOnly, cat(extension(13, new byte[0]))),                            // empty signatures
            hello(rsaOnly, cat(extension(11, new byte[] {2, 0}))),                       // truncated formats
            hello(rsaOnly, cat(extension(0xFF01, new byte[] {1}))),                      // truncated reneg
            hello(rsaOnly, cat(u16(21), u16(10), new byte[4])),                          // extension overruns
        };
        for (byte[] message : malformed) {
            assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(message, message.length), Arrays.toString(message));
            assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(message, 1), "split into bytes");
        }
        byte[] good = hello(SUITES, usualExtensions());
        byte[] lying = good.clone();
        lying[3]++; // the message says one byte more than it has... and the block no longer ends it
        assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(cat(lying, new byte[] {0}), 7));
        byte[] oddSuites = hello(new int[] {0xC02B}, null);
        oddSuites[4 + 2 + 32 + 5 + 1] = 3; // cipher_suites length 3
        assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(oddSuites, 1));
        byte[] longSessionId = hello(SUITES, null);
        longSessionId[4 + 2 + 32] = 33;
        assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(longSessionId, 1));
    }

    @Test
    void aRepeatedExtensionIsIllegalAndAnotherMessageUnexpected() {
        byte[] twice = hello(SUITES, usualExtensions(extension(23, new byte[0])));
        assertEquals(Tls.ALERT_ILLEGAL_PARAMETER, alertOf(twice, 1));
        byte[] notHello = hello(SUITES, null);
        notHello[0] = 16;
        assertEquals(Tls.ALERT_UNEXPECTED_MESSAGE, alertOf(notHello, 1));
    }

    @Test
    void whatTheHelloLacksIsNotedForTheNegotiation() {
        byte[] bare = hello(new int[] {0xC0AE}, cat(extension(13, list16(0x0203, 0x0603))));
        assertEquals(bare.length, feed(bare, 3));
        assertTrue(parser.done());
        assertEquals(4, parser.suites());
        assertEquals(0, parser.signature(), "SHA-1 never, SHA-512 not on this card");
        assertEquals(0, parser.facts() & (ClientHelloParser.F_GROUPS | ClientHelloParser.F_EXTENDED_MASTER_SECRET));
        byte[] renegotiating = hello(SUITES, cat(extension(0xFF01, new byte[] {2, 7, 7})));
        feed(renegotiating, 1);
        assertTrue((parser.facts() & ClientHelloParser.F_RENEGOTIATION_NOT_EMPTY) != 0);
        assertFalse((parser.facts() & ClientHelloParser.F_SIGNATURES) != 0);
    }

    private static void setSni(int slot, byte[] list) {
        persistent.slot((byte) slot).setSni(list, (short) 0, (short) list.length);
    }

    @Test
    void theHostNameIsMatchedAgainstEachIdentitysSniNamesHoweverItIsSplit() {
        setSni(0, sniList("a.example", "device.example.org"));
        setSni(1, sniList("device.example.net", "device.example.com", "x"));
        try {
            // The first host_name counts (case ignored); other name types and later ones do not.
            byte[] toSlot1 = hello(SUITES, usualExtensions(serverName(7, "device.example.org",
                    0, "Device.Example.COM", 0, "a.example")));
            byte[] toSlot0 = hello(SUITES, cat(serverName(0, "device.example.org"), usualExtensions()));
            byte[] toNone = hello(SUITES, usualExtensions(serverName(0, "device.example.co")));
            byte[] longer = hello(SUITES, usualExtensions(serverName(0, "device.example.comm")));
            for (int[] sizes : new int[][] {{4096}, {1}, {2}, {3}, {5, 1, 7}}) {
                assertEquals(toSlot1.length, feed(toSlot1, sizes));
                assertTrue(parser.done());
                assertFalse(parser.serverNameMatches((byte) 0));
                assertTrue(parser.serverNameMatches((byte) 1), "in pieces of " + Arrays.toString(sizes));
                assertTrue((parser.facts() & ClientHelloParser.F_SERVER_NAME) != 0);
                feed(toSlot0, sizes);
                assertTrue(parser.serverNameMatches((byte) 0));
                assertFalse(parser.serverNameMatches((byte) 1));
                for (byte[] other : new byte[][] {toNone, longer, hello(SUITES, usualExtensions())}) {
                    assertEquals(other.length, feed(other, sizes));
                    assertTrue(parser.done());
                    assertFalse(parser.serverNameMatches((byte) 0));
                    assertFalse(parser.serverNameMatches((byte) 1));
                }
            }
        } finally {
            setSni(0, new byte[0]);
            setSni(1, new byte[0]);
        }
    }

    @Test
    void aMalformedServerNameIsADecodeError() {
        byte[][] malformed = {
            hello(SUITES, cat(extension(0, new byte[0]))),                          // no list at all
            hello(SUITES, cat(extension(0, new byte[] {0, 0}))),                    // empty list
            hello(SUITES, cat(extension(0, new byte[] {0, 5, 0, 0, 1, 'a'}))),      // list overruns
            hello(SUITES, cat(extension(0, new byte[] {0, 4, 0, 0, 2, 'a'}))),      // name overruns the list
            hello(SUITES, cat(extension(0, new byte[] {0, 3, 0, 0, 0}))),           // empty host_name
            hello(SUITES, cat(extension(0, new byte[] {0, 4, 0, 0, 1, 'a', 9}))),   // bytes after the list
        };
        for (byte[] message : malformed) {
            assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(message, message.length), Arrays.toString(message));
            assertEquals(Tls.ALERT_DECODE_ERROR, alertOf(message, 1), "split into bytes");
        }
        byte[] twice = hello(SUITES, cat(serverName(0, "a"), serverName(0, "b")));
        assertEquals(Tls.ALERT_ILLEGAL_PARAMETER, alertOf(twice, 1));
    }

    @Test
    void unsignedComparisonCoversTheWholeRange() {
        assertTrue(ClientHelloParser.unsignedLess((short) 1, (short) 0xFFFF));
        assertFalse(ClientHelloParser.unsignedLess((short) 0xFFFF, (short) 0x7FFF));
        assertTrue(ClientHelloParser.unsignedLess((short) 0x7FFF, (short) 0x8000));
        assertFalse(ClientHelloParser.unsignedLess((short) 5, (short) 5));
    }
}
