package org.setls.applet;

import javacard.framework.Util;

/**
 * The ClientHello (RFC 5246 7.4.1.2) parsed as a stream, so the card never holds it whole: a
 * client may send up to 2^16-1 bytes of it and more (many suites, post-quantum key shares,
 * padding), over any number of records, which the host may hand over in several PROCESS EAP
 * messages. {@link #feed} takes the bytes as they come, in pieces of any size, and keeps only
 * what the server acts on: client_version, the random (straight into Transients.TLS_RANDOMS),
 * which of the card's suites are offered, what the extensions it knows say, and which identities
 * list the server_name's host_name among their SNI names (matched byte by byte as it comes, so a
 * name split between records costs no buffer). Everything else (session_id, unknown extensions,
 * padding) is skipped. The caller hashes every byte.
 *
 * Every length is checked as it is read, against the structure that contains it, so a malformed
 * hello is a decode_error before anything is negotiated (the server negotiates once the whole
 * hello parsed, TlsServer.negotiate). A structure's length is taken from its parent when it is
 * opened; bytes are then counted against the innermost structure only.
 *
 * Lengths up to 2^16-1 are unsigned shorts; the message's own 24-bit length is a high part and
 * an unsigned low short (the card has no int).
 *
 * RAM, session state (a hello may span APDUs): Transients.HELLO_STATE (STATE_SIZE shorts: the
 * SNI match takes 2 + one per identity slot) and
 * Transients.HELLO_FIELD (FIELD_SIZE bytes: a field split between records).
 */
final class ClientHelloParser {
    // Steps. A field step collects SIZES[step] bytes then acts; a skip step (size 0) passes over
    // the rest of its structure.
    private static final byte HEADER = 0;             // msg_type, length<3>
    private static final byte VERSION = 1;            // client_version
    private static final byte RANDOM = 2;             // random, into Transients.TLS_RANDOMS
    private static final byte SESSION_ID_LENGTH = 3;
    private static final byte SESSION_ID = 4;         // skipped
    private static final byte SUITES_LENGTH = 5;
    private static final byte SUITE = 6;              // one of the list
    private static final byte COMPRESSION_LENGTH = 7;
    private static final byte COMPRESSION = 8;        // one of the list
    private static final byte EXTENSIONS_LENGTH = 9;
    private static final byte EXTENSION_HEADER = 10;  // extension_type, extension_data length
    private static final byte GROUPS_LENGTH = 11;     // supported_groups (RFC 8422 5.1.1)
    private static final byte GROUP = 12;
    private static final byte FORMATS_LENGTH = 13;    // ec_point_formats (RFC 8422 5.1.2)
    private static final byte FORMAT = 14;
    private static final byte SIGNATURES_LENGTH = 15; // signature_algorithms (RFC 5246 7.4.1.4.1)
    private static final byte SIGNATURE = 16;
    private static final byte RENEGOTIATION_LENGTH = 17; // renegotiation_info (RFC 5746 3.2)
    private static final byte SKIP_EXTENSION = 18;    // the rest of an extension, skipped
    private static final byte SERVER_NAMES_LENGTH = 19; // server_name (RFC 6066 3): ServerNameList
    private static final byte SERVER_NAME_HEADER = 20;  // name_type, HostName length
    private static final byte HOST_NAME = 21;         // the first host_name, matched as it passes
    private static final byte OTHER_NAME = 22;        // another name, skipped
    private static final byte DONE = 23;
    private static final byte TICKET = 24;            // session_ticket (RFC 5077 3.2): its place noted, skipped
    private static final byte COOKIE_LENGTH = 25;     // DTLS (RFC 6347 4.2.1): cookie<0..2^8-1>
    private static final byte COOKIE = 26;            // skipped (the host checked it)
    private static final byte[] SIZES = {4, 2, 32, 1, 0, 2, 2, 1, 1, 2, 4, 2, 2, 1, 1, 2, 2, 1, 0, 2, 3, 0, 0, 0, 0, 1, 0};
    // The structure each step's bytes count against: none (the header), the message body, the
    // extensions block, the current extension, the current list, the current server name.
    private static final byte IN_NOTHING = 0;
    private static final byte IN_MESSAGE = 1;
    private static final byte IN_EXTENSIONS = 2;
    private static final byte IN_EXTENSION = 3;
    private static final byte IN_LIST = 4;
    private static final byte IN_NAME = 5;
    private static final byte[] CONTAINERS = {0, 1, 1, 1, 4, 1, 4, 1, 4, 1, 2, 3, 4, 3, 4, 3, 4, 3, 3, 3, 4, 5, 5, 0, 3, 1, 4};

    /** What the hello said, as bits of {@link #facts()}. */
    static final short F_SCSV = 0x0001;               // TLS_EMPTY_RENEGOTIATION_INFO_SCSV offered
    static final short F_RENEGOTIATION_INFO = 0x0002; // the extension is present
    static final short F_RENEGOTIATION_NOT_EMPTY = 0x0004;
    static final short F_EXTENDED_MASTER_SECRET = 0x0008;
    static final short F_POINT_FORMATS = 0x0010;
    static final short F_UNCOMPRESSED = 0x0020;
    static final short F_GROUPS = 0x0040;
    static final short F_SECP256R1 = 0x0080;
    static final short F_SIGNATURES = 0x0100;
    static final short F_NULL_COMPRESSION = 0x0200;
    static final short F_SERVER_NAME = 0x0400;        // the extension is present
    static final short F_HOST_NAME = 0x0800;          // its first host_name was matched
    static final short F_SESSION_TICKET = 0x1000;     // session_ticket is present (RFC 5077 3.2)

    // State: shorts of the arena from Transients.HELLO_STATE.
    private static final short ST_STEP = Transients.HELLO_STATE;
    private static final short ST_HAVE = (short) (ST_STEP + 1);        // bytes of the current field so far
    private static final short ST_MESSAGE_HIGH = (short) (ST_STEP + 2); // body bytes left: high part
    private static final short ST_MESSAGE = (short) (ST_STEP + 3);      // body bytes left: low 16 bits
    private static final short ST_EXTENSIONS = (short) (ST_STEP + 4);   // extensions block bytes left
    private static final short ST_EXTENSION = (short) (ST_STEP + 5);    // current extension bytes left
    private static final short ST_LIST = (short) (ST_STEP + 6);         // current list bytes left
    private static final short ST_FACTS = (short) (ST_STEP + 7);
    private static final short ST_SUITES = (short) (ST_STEP + 8);       // suiteBit() of each offered suite
    private static final short ST_SIGNATURE = (short) (ST_STEP + 9);    // first usable scheme, 0 if none
    private static final short ST_VERSION = (short) (ST_STEP + 10);     // client_version
    private static final short ST_NAME = (short) (ST_STEP + 11);        // current server name bytes left
    private static final short ST_HOST_LENGTH = (short) (ST_STEP + 12); // the host_name's length
    /**
     * One short per identity slot: the offset in its SNI list of the first name that equals the
     * host_name so far (Identity.sniNext), -1 once none can.
     */
    private static final short ST_SNI = (short) (ST_STEP + 13);
    // Resumption (SessionCache): the cache entries whose session ID equals the hello's so far (a
    // bit each), where the session_id and a ticket of SessionCache.TICKET_SIZE bytes lie in the
    // message being parsed (offset + 1; 0: not whole in one record of this message), and the
    // session_id's length.
    private static final short ST_SID_MATCH = (short) (ST_SNI + Constants.MAX_IDENTITIES);
    private static final short ST_SID_AT = (short) (ST_SID_MATCH + 1);
    private static final short ST_SID_LENGTH = (short) (ST_SID_MATCH + 2);
    private static final short ST_TICKET_AT = (short) (ST_SID_MATCH + 3);
    static final short STATE_SIZE = (short) (13 + Constants.MAX_IDENTITIES + 4);
    /** A field split between records: bytes of the arena from Transients.HELLO_FIELD. */
    private static final short FIELD = Transients.HELLO_FIELD;
    static final short FIELD_SIZE = 4;
    private static final short RANDOM_OFF = Transients.TLS_RANDOMS; // client_random

    private final Transients ram;
    private final short[] st;
    private final byte[] bytes;
    private final TlsAlert alert;
    private final Persistent persistent;
    private final boolean sha384;
    private final boolean sha512;
    private final SessionCache cache;

    /**
     * Allocated once, at install; the state is the arena's. sha384/512: the card can sign with
     * them; persistent: the identities whose SNI names a host_name is matched against.
     */
    ClientHelloParser(Transients ram, TlsAlert alert, Persistent persistent, boolean sha384, boolean sha512,
                      SessionCache cache) {
        this.ram = ram;
        this.cache = cache;
        st = ram.shorts;
        bytes = ram.bytes;
        this.alert = alert;
        this.persistent = persistent;
        this.sha384 = sha384;
        this.sha512 = sha512;
    }

    void reset() {
        ram.clearShorts(ST_STEP, STATE_SIZE);
        ram.clearBytes(FIELD, FIELD_SIZE);
    }

    boolean done() {
        return st[ST_STEP] == DONE;
    }

    short facts() {
        return st[ST_FACTS];
    }

    /**
     * The cache entry whose session ID the hello's session_id equals (all ID_SIZE bytes), valid
     * when the hello began; -1 if none.
     */
    short sessionIdEntry() {
        short mask = st[ST_SID_MATCH];
        if (st[ST_SID_LENGTH] != SessionCache.ID_SIZE || mask == 0) {
            return -1;
        }
        for (short e = 0; e < SessionCache.ENTRIES; e++) {
            if ((mask & (short) (1 << e)) != 0) {
                return e;
            }
        }
        return -1;
    }

    /** The session_id's length (0 to 32). */
    short sessionIdLength() {
        return st[ST_SID_LENGTH];
    }

    /** Where the session_id is in the current message's buffer, or -1 if it is not whole there. */
    short sessionIdAt() {
        return (short) (st[ST_SID_AT] - 1);
    }

    /** Where a ticket of SessionCache.TICKET_SIZE bytes is in the current message's buffer, or -1. */
    short ticketAt() {
        return (short) (st[ST_TICKET_AT] - 1);
    }

    /** A new message of the hello: what lay in the buffer before is gone. */
    void forgetPositions() {
        st[ST_SID_AT] = 0;
        st[ST_TICKET_AT] = 0;
    }

    /** suiteBit() of each of the card's suites the client offers. */
    short suites() {
        return st[ST_SUITES];
    }

    /** The client's first signature scheme (its preference) that the card can sign with; 0 if none. */
    short signature() {
        return st[ST_SIGNATURE];
    }

    short version() {
        return st[ST_VERSION];
    }

    /** True if the hello's host_name (its first) is one of the SNI names of the identity in that slot. */
    boolean serverNameMatches(byte slot) {
        return (st[ST_FACTS] & F_HOST_NAME) != 0 && st[(short) (ST_SNI + slot)] >= 0;
    }

    /** The bit of a suite in {@link #suites()}: one for each suite the card knows, 0 for others. */
    static short suiteBit(short suite) {
        switch (suite) {
            case Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:
                return 1;
            case Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM:
                return 2;
            case Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8:
                return 4;
            case Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:
                return 8;
            case Tls.TLS_PSK_WITH_AES_128_CCM_8:
                return 16;
            case Tls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256:
                return 32;
            default:
                return 0;
        }
    }

    /**
     * Parses {@code len} bytes of the handshake stream at buf[off]; returns how many belong to the
     * ClientHello (fewer than len once it ended: what follows is not the hello's). Throws the
     * TlsAlert of a malformed hello (decode_error; unexpected_message if it is not a ClientHello;
     * illegal_parameter for a repeated extension).
     */
    short feed(byte[] buf, short off, short len) {
        short start = off;
        short end = (short) (off + len);
        while (off < end && st[ST_STEP] != DONE) {
            byte step = (byte) st[ST_STEP];
            short size = SIZES[step];
            short available = (short) (end - off);
            if (size == 0) {
                short left = st[container(step)];
                short n = unsignedLess(left, available) ? left : available;
                if (step == HOST_NAME) {
                    matchHostName(buf, off, n);
                } else if (step == SESSION_ID) {
                    matchSessionId(buf, off, n, left);
                } else if (step == TICKET && n == left && left == SessionCache.TICKET_SIZE) {
                    st[ST_TICKET_AT] = (short) (off + 1);
                }
                st[container(step)] = (short) (left - n);
                off += n;
                if (n == left) {
                    afterSkip(step);
                    enter();
                }
                continue;
            }
            short have = st[ST_HAVE];
            short n = (short) (size - have);
            if (n > available) {
                n = available;
            }
            if (step == RANDOM) {
                Util.arrayCopyNonAtomic(buf, off, bytes, (short) (RANDOM_OFF + have), n);
            } else {
                Util.arrayCopyNonAtomic(buf, off, bytes, (short) (FIELD + have), n);
            }
            off += n;
            have += n;
            if (have < size) {
                st[ST_HAVE] = have;
            } else {
                st[ST_HAVE] = 0;
                onField(step);
                enter();
            }
        }
        return (short) (off - start);
    }

    /**
     * Counts the next field's bytes against the structure that holds it as soon as the parser
     * gets to it, before they come: decode_error if they cannot fit. So the parser is DONE
     * exactly when the message's last byte is taken, or has refused the hello already; it never
     * waits for bytes a structure has no room for.
     */
    private void enter() {
        byte step = (byte) st[ST_STEP];
        short size = SIZES[step];
        if (size != 0) {
            charge(step, size);
        }
    }

    /** Counts a field's bytes against the structure that holds it: decode_error if they do not fit. */
    private void charge(byte step, short size) {
        byte in = CONTAINERS[step];
        if (in == IN_NOTHING) {
            return;
        }
        if (in == IN_MESSAGE) {
            takeFromMessage(size);
            return;
        }
        short at = container(step);
        if (unsignedLess(st[at], size)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        st[at] -= size;
    }

    private static short container(byte step) {
        switch (CONTAINERS[step]) {
            case IN_EXTENSIONS:
                return ST_EXTENSIONS;
            case IN_EXTENSION:
                return ST_EXTENSION;
            case IN_LIST:
                return ST_LIST;
            case IN_NAME:
                return ST_NAME;
            default:
                return ST_MESSAGE;
        }
    }

    /** Takes n (unsigned) bytes from what is left of the message body: decode_error if fewer are left. */
    private void takeFromMessage(short n) {
        short low = st[ST_MESSAGE];
        if (unsignedLess(low, n)) {
            if (st[ST_MESSAGE_HIGH] == 0) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            st[ST_MESSAGE_HIGH]--;
        }
        st[ST_MESSAGE] = (short) (low - n);
    }

    /** Opens a list of n (unsigned) bytes inside the message body. */
    private void openListInMessage(short n, byte step) {
        takeFromMessage(n);
        st[ST_LIST] = n;
        st[ST_STEP] = step;
    }

    /** Opens the list that must fill the current extension (its length field already read). */
    private void openListInExtension(short n, short elementSize, byte step) {
        if (n != st[ST_EXTENSION] || n == 0 || (n & (short) (elementSize - 1)) != 0) {
            alert.raise(Tls.ALERT_DECODE_ERROR); // truncated, overlong, empty or odd list
        }
        st[ST_EXTENSION] = 0;
        st[ST_LIST] = n;
        st[ST_STEP] = step;
    }

    private void onField(byte step) {
        short value = Util.getShort(bytes, FIELD); // a 2-byte field (garbage for 1-byte ones)
        short first = (short) (bytes[FIELD] & 0xFF);
        switch (step) {
            case HEADER:
                if (bytes[FIELD] != Tls.HS_CLIENT_HELLO) {
                    alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
                }
                short high = (short) (bytes[(short) (FIELD + 1)] & 0xFF);
                short low = Util.getShort(bytes, (short) (FIELD + 2));
                if (high > Tls.CLIENT_HELLO_MAX_HIGH
                        || (high == Tls.CLIENT_HELLO_MAX_HIGH && unsignedLess(Tls.CLIENT_HELLO_MAX_LOW, low))) {
                    alert.raise(Tls.ALERT_DECODE_ERROR); // longer than any ClientHello can be
                }
                st[ST_MESSAGE_HIGH] = high;
                st[ST_MESSAGE] = low;
                st[ST_STEP] = VERSION;
                break;
            case VERSION:
                st[ST_VERSION] = value;
                st[ST_STEP] = RANDOM;
                break;
            case RANDOM:
                st[ST_STEP] = SESSION_ID_LENGTH;
                break;
            case SESSION_ID_LENGTH:
                if (first > 32) {
                    alert.raise(Tls.ALERT_DECODE_ERROR); // SessionID is opaque<0..32>
                }
                st[ST_SID_LENGTH] = first;
                st[ST_SID_MATCH] = first == SessionCache.ID_SIZE ? cache.validEntries() : 0;
                openListInMessage(first, first != 0 ? SESSION_ID : afterSessionId());
                break;
            case COOKIE_LENGTH:
                if (first == 0) {
                    // The host answers a cookie-less ClientHello itself (HelloVerifyRequest).
                    alert.raise(Tls.ALERT_HANDSHAKE_FAILURE);
                }
                openListInMessage(first, COOKIE);
                break;
            case SUITES_LENGTH:
                if (value == 0 || (value & 1) != 0) {
                    alert.raise(Tls.ALERT_DECODE_ERROR); // cipher_suites<2..2^16-2>
                }
                openListInMessage(value, SUITE);
                break;
            case SUITE:
                if (value == Tls.TLS_EMPTY_RENEGOTIATION_INFO_SCSV) {
                    st[ST_FACTS] |= F_SCSV;
                }
                st[ST_SUITES] |= suiteBit(value);
                if (st[ST_LIST] == 0) {
                    st[ST_STEP] = COMPRESSION_LENGTH;
                }
                break;
            case COMPRESSION_LENGTH:
                if (first == 0) {
                    alert.raise(Tls.ALERT_DECODE_ERROR); // compression_methods<1..2^8-1>
                }
                openListInMessage(first, COMPRESSION);
                break;
            case COMPRESSION:
                if (first == Tls.COMPRESSION_NULL) {
                    st[ST_FACTS] |= F_NULL_COMPRESSION;
                }
                if (st[ST_LIST] == 0) {
                    // Extensions are there if bytes follow the compression methods (RFC 5246 7.4.1.2).
                    boolean more = st[ST_MESSAGE_HIGH] != 0 || st[ST_MESSAGE] != 0;
                    st[ST_STEP] = more ? EXTENSIONS_LENGTH : DONE;
                }
                break;
            case EXTENSIONS_LENGTH:
                if (st[ST_MESSAGE_HIGH] != 0 || st[ST_MESSAGE] != value) {
                    alert.raise(Tls.ALERT_DECODE_ERROR); // the block must end the message
                }
                st[ST_MESSAGE] = 0;
                st[ST_EXTENSIONS] = value;
                st[ST_STEP] = value == 0 ? DONE : EXTENSION_HEADER;
                break;
            case EXTENSION_HEADER:
                onExtensionHeader(value, Util.getShort(bytes, (short) (FIELD + 2)));
                break;
            case GROUPS_LENGTH:
                openListInExtension(value, (short) 2, GROUP);
                break;
            case GROUP:
                if (value == Tls.GROUP_SECP256R1) {
                    st[ST_FACTS] |= F_SECP256R1;
                }
                endOfListElement();
                break;
            case FORMATS_LENGTH:
                openListInExtension(first, (short) 1, FORMAT);
                break;
            case FORMAT:
                if (first == Tls.POINT_FORMAT_UNCOMPRESSED) {
                    st[ST_FACTS] |= F_UNCOMPRESSED;
                }
                endOfListElement();
                break;
            case SIGNATURES_LENGTH:
                openListInExtension(value, (short) 2, SIGNATURE);
                break;
            case SIGNATURE:
                if (st[ST_SIGNATURE] == 0 && canSign(value)) {
                    st[ST_SIGNATURE] = value; // the client lists its preference first
                }
                endOfListElement();
                break;
            case RENEGOTIATION_LENGTH:
                // renegotiated_connection<0..255> fills the extension.
                if (first != st[ST_EXTENSION]) {
                    alert.raise(Tls.ALERT_DECODE_ERROR);
                }
                if (first != 0) {
                    st[ST_FACTS] |= F_RENEGOTIATION_NOT_EMPTY;
                }
                endOrSkipExtension();
                break;
            case SERVER_NAMES_LENGTH:
                openListInExtension(value, (short) 1, SERVER_NAME_HEADER); // server_name_list<1..2^16-1>
                break;
            case SERVER_NAME_HEADER:
                onServerNameHeader(bytes[FIELD], Util.getShort(bytes, (short) (FIELD + 1)));
                break;
            default:
                alert.raise(Tls.ALERT_INTERNAL_ERROR);
        }
    }

    private void onExtensionHeader(short type, short length) {
        if (unsignedLess(st[ST_EXTENSIONS], length)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        st[ST_EXTENSIONS] -= length;
        st[ST_EXTENSION] = length;
        switch (type) {
            case Tls.EXT_SUPPORTED_GROUPS:
                present(F_GROUPS);
                st[ST_STEP] = GROUPS_LENGTH;
                break;
            case Tls.EXT_EC_POINT_FORMATS:
                present(F_POINT_FORMATS);
                st[ST_STEP] = FORMATS_LENGTH;
                break;
            case Tls.EXT_SIGNATURE_ALGORITHMS:
                present(F_SIGNATURES);
                st[ST_STEP] = SIGNATURES_LENGTH;
                break;
            case Tls.EXT_EXTENDED_MASTER_SECRET:
                present(F_EXTENDED_MASTER_SECRET);
                if (length != 0) {
                    alert.raise(Tls.ALERT_DECODE_ERROR); // RFC 7627 5.1: extension_data is empty
                }
                endOrSkipExtension();
                break;
            case Tls.EXT_RENEGOTIATION_INFO:
                present(F_RENEGOTIATION_INFO);
                st[ST_STEP] = RENEGOTIATION_LENGTH;
                break;
            case Tls.EXT_SERVER_NAME:
                present(F_SERVER_NAME);
                st[ST_STEP] = SERVER_NAMES_LENGTH;
                break;
            case Tls.EXT_SESSION_TICKET:
                present(F_SESSION_TICKET);
                // Only a ticket of this card's size can open; any other is skipped (a full handshake).
                if (length == SessionCache.TICKET_SIZE) {
                    st[ST_STEP] = TICKET;
                } else {
                    endOrSkipExtension();
                }
                break;
            default:
                // RFC 5246 7.4.1.4: extensions the server does not know are ignored.
                endOrSkipExtension();
        }
    }

    /**
     * A ServerName's header (RFC 6066 3): HostName<1..2^16-1> must fit the list. The first
     * host_name is matched against the identities' SNI names as its bytes pass; other names, and
     * any later host_name, are skipped.
     */
    private void onServerNameHeader(byte type, short length) {
        if (length == 0 || unsignedLess(st[ST_LIST], length)) {
            alert.raise(Tls.ALERT_DECODE_ERROR);
        }
        st[ST_LIST] -= length;
        st[ST_NAME] = length;
        if (type == Tls.SERVER_NAME_HOST && (st[ST_FACTS] & F_HOST_NAME) == 0) {
            st[ST_FACTS] |= F_HOST_NAME;
            st[ST_HOST_LENGTH] = length;
            ram.clearShorts(ST_SNI, Constants.MAX_IDENTITIES); // every identity's list, from its start
            st[ST_STEP] = HOST_NAME;
        } else {
            st[ST_STEP] = OTHER_NAME;
        }
    }

    /** n bytes of the host_name at buf[off]: each identity's candidate moves on or drops out. */
    private void matchHostName(byte[] buf, short off, short n) {
        short length = st[ST_HOST_LENGTH];
        short index = (short) (length - st[ST_NAME]); // the host_name's bytes matched so far
        for (byte slot = 0; slot < Constants.MAX_IDENTITIES; slot++) {
            short at = (short) (ST_SNI + slot);
            Identity id = persistent.slot(slot);
            for (short i = 0; i < n && st[at] >= 0; i++) {
                st[at] = id.sniNext(st[at], length, (short) (index + i), buf[(short) (off + i)]);
            }
        }
    }

    /**
     * n bytes of the session_id at buf[off], {@code left} of it not yet passed: each cache entry
     * whose ID differs drops out (the ID is no secret: no constant time needed). Its place is noted
     * when it is whole here.
     */
    private void matchSessionId(byte[] buf, short off, short n, short left) {
        short length = st[ST_SID_LENGTH];
        if (n == left && left == length) {
            st[ST_SID_AT] = (short) (off + 1);
        }
        short mask = st[ST_SID_MATCH];
        if (mask == 0) {
            return;
        }
        short index = (short) (length - left);
        for (short e = 0; e < SessionCache.ENTRIES; e++) {
            short bit = (short) (1 << e);
            if ((mask & bit) == 0) {
                continue;
            }
            for (short i = 0; i < n; i++) {
                if (cache.idByte(e, (short) (index + i)) != buf[(short) (off + i)]) {
                    mask &= (short) ~bit;
                    break;
                }
            }
        }
        st[ST_SID_MATCH] = mask;
    }

    /** Notes an extension; a second one of the same type is illegal (RFC 5246 7.4.1.4). */
    private void present(short fact) {
        if ((st[ST_FACTS] & fact) != 0) {
            alert.raise(Tls.ALERT_ILLEGAL_PARAMETER);
        }
        st[ST_FACTS] |= fact;
    }

    private void endOfListElement() {
        if (st[ST_LIST] == 0) {
            endOrSkipExtension();
        }
    }

    /** DTLS's ClientHello has the cookie after the session_id (RFC 6347 4.2.1). */
    private byte afterSessionId() {
        return st[Transients.DTLS_MODE] != 0 ? COOKIE_LENGTH : SUITES_LENGTH;
    }

    /** Skips what is left of the current extension, or goes on with the next one. */
    private void endOrSkipExtension() {
        if (st[ST_EXTENSION] != 0) {
            st[ST_STEP] = SKIP_EXTENSION;
        } else {
            st[ST_STEP] = st[ST_EXTENSIONS] == 0 ? DONE : EXTENSION_HEADER;
        }
    }

    private void afterSkip(byte step) {
        if (step == SESSION_ID) {
            st[ST_STEP] = afterSessionId();
        } else if (step == COOKIE) {
            st[ST_STEP] = SUITES_LENGTH;
        } else if (step == HOST_NAME || step == OTHER_NAME) {
            if (st[ST_LIST] != 0) {
                st[ST_STEP] = SERVER_NAME_HEADER;
            } else {
                endOrSkipExtension(); // the list filled the extension
            }
        } else {
            endOrSkipExtension();
        }
    }

    /** ECDSA with a hash the card has; SHA-1 and SHA-224 never (RFC 9155). */
    private boolean canSign(short scheme) {
        return scheme == Tls.SIG_ECDSA_SHA256 || (scheme == Tls.SIG_ECDSA_SHA384 && sha384)
                || (scheme == Tls.SIG_ECDSA_SHA512 && sha512);
    }

    /** a < b, both read as unsigned 16-bit numbers. */
    static boolean unsignedLess(short a, short b) {
        return (short) (a ^ (short) 0x8000) < (short) (b ^ (short) 0x8000);
    }
}
