package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;

/**
 * The card's side of EAP-TLS (RFC 5216) carried in APDUs as OpenEapSmartcard does
 * (draft-urien-eap-smartcard): the host is the EAP peer and sends EAP-Responses, the card is the
 * EAP server and answers with EAP-Requests. A TLS message larger than one EAP packet travels in
 * fragments (flags L and M), each acknowledged by an empty EAP-TLS packet; one EAP packet may span
 * several chained APDUs (CLA bit 0x10); a long answer is fetched with GET RESPONSE.
 *
 * Messages are reassembled in the I/O buffer at {@link #MSG_OFF}; the 10 bytes before it leave room
 * for the EAP-TLS header of the first outgoing fragment, so fragments are sent without copies.
 * RAM (session state, it spans APDUs): Transients.EAP_STATE (STATE_SIZE shorts), EAP_NAME
 * (IDENTITY_MAX bytes), EAP_HANDLER.
 */
final class EapTls {
    // RFC 3748 section 4: Code field.
    static final byte CODE_REQUEST = 1;
    static final byte CODE_RESPONSE = 2;
    static final byte CODE_SUCCESS = 3;
    static final byte CODE_FAILURE = 4;
    // RFC 3748 section 5 and RFC 5216 section 3.1: Type field.
    static final byte TYPE_IDENTITY = 1;
    static final byte TYPE_TLS = 13;
    // RFC 5216 section 3.1: Flags field.
    static final byte FLAG_LENGTH_INCLUDED = (byte) 0x80;
    static final byte FLAG_MORE_FRAGMENTS = 0x40;
    static final byte FLAG_START = 0x20;

    static final short EAP_HEADER_SIZE = 4;         // code, identifier, length
    static final short EAP_TLS_HEADER_SIZE = 6;     // + type, flags
    static final short TLS_MESSAGE_LENGTH_SIZE = 4; // present when L is set
    /** Where messages start in the I/O buffer: room for the largest EAP-TLS header before it. */
    static final short MSG_OFF = EAP_TLS_HEADER_SIZE + TLS_MESSAGE_LENGTH_SIZE;

    /** EAP packet size the card uses towards the host when the command does not say (P1P2 = 0). */
    static final short DEFAULT_PACKET_SIZE = 1024;
    static final short MIN_PACKET_SIZE = 16;
    static final short IDENTITY_MAX = 32;

    // Conversation states.
    private static final short S_IDLE = 0;      // waiting for EAP-Response/Identity
    private static final short S_STARTED = 1;   // Start (or final answer) sent: waiting for a message
    private static final short S_RECEIVING = 2; // fragment acknowledged: waiting for the next one
    private static final short S_SENDING = 3;   // fragment with M sent: waiting for its acknowledgement
    private static final short S_SENT = 4;      // last fragment sent: waiting for a message or an ack
    private static final short S_CLOSED = 5;    // Success or Failure sent

    // Kinds of the EAP packet being received.
    private static final short K_NONE = 0;
    private static final short K_IDENTITY = 1;
    private static final short K_DATA = 2;
    private static final short K_ACK = 3;

    // The conversation's state, per session: shorts of the active session from Transients.EAP_STATE.
    private static final short ST_STATE = Transients.EAP_STATE;
    private static final short ST_ID = (short) (ST_STATE + 1);         // identifier of the last request sent
    private static final short ST_IN_TOTAL = (short) (ST_STATE + 2);   // announced message length, -1 if not announced
    private static final short ST_IN_GOT = (short) (ST_STATE + 3);     // message bytes received so far
    private static final short ST_OUT_LEN = (short) (ST_STATE + 4);    // length of the message being sent
    private static final short ST_OUT_SENT = (short) (ST_STATE + 5);   // bytes of it sent so far
    private static final short ST_PACKET_MAX = (short) (ST_STATE + 6); // EAP packet size towards the host
    static final short STATE_SIZE = 7;
    // The EAP packet being received (card-wide: its chained APDUs come in a row, and any other
    // command drops it): shorts of the arena from Transients.EAP_PACKET.
    private static final short PK_LEFT = Transients.EAP_PACKET;        // bytes of the packet still to come
    private static final short PK_KIND = (short) (PK_LEFT + 1);
    private static final short PK_FLAGS = (short) (PK_LEFT + 2);
    private static final short PK_NAME_LEN = (short) (PK_LEFT + 3);
    private static final short PK_SESSION = (short) (PK_LEFT + 4);     // the packet's session handle
    static final short PACKET_STATE_SIZE = 5;
    /** The identity being received: bytes of the arena from Transients.EAP_NAME. */
    private static final short NAME = Transients.EAP_NAME;
    private static final short HANDLER = Transients.EAP_HANDLER;

    private final byte[] io;
    private final short msgCap;
    private final Transients ram;
    private final short[] st;
    private final byte[] name;
    private final Object[] refs;
    private final IdentityDirectory directory;
    private final Sessions sessions;
    private final OpCounters counters;

    /** Allocated once, at install; the state is the arena's. */
    EapTls(byte[] io, IdentityDirectory directory, Sessions sessions, OpCounters counters, Transients ram) {
        this.io = io;
        this.counters = counters;
        this.sessions = sessions;
        this.msgCap = (short) (io.length - MSG_OFF);
        this.directory = directory;
        this.ram = ram;
        st = ram.shorts;
        name = ram.bytes;
        refs = ram.refs;
    }

    /** The handler of the current conversation, or null. */
    MessageHandler current() {
        return (MessageHandler) refs[HANDLER];
    }

    /**
     * Ends the active session: its handler forgets it (a TLS session frees its handshake slot and
     * keys), the conversation is dropped and the session's slot is free.
     */
    void endSession() {
        MessageHandler h = current();
        if (h != null) {
            h.end();
        }
        sessions.clearActive();
    }

    /** Drops the EAP packet being received, if any: any command but PROCESS EAP PACKET does. */
    void abandonPacket() {
        ram.clearShorts(PK_LEFT, PACKET_STATE_SIZE);
        ram.clearBytes(NAME, IDENTITY_MAX);
    }

    /**
     * PROCESS EAP PACKET: P1P2 = largest EAP packet the host accepts back (0: card's default); the
     * data of the first APDU of a packet starts with the session handle, then the EAP packet.
     */
    void process(APDU apdu, ResponseStream out) {
        byte[] buf = apdu.getBuffer();
        boolean chained = (buf[ISO7816.OFFSET_CLA] & Constants.CLA_CHAINING) != 0;
        short packetMax = Util.getShort(buf, ISO7816.OFFSET_P1);
        short got = apdu.setIncomingAndReceive();
        short off = apdu.getOffsetCdata();
        if (st[PK_LEFT] == 0) {
            if (got < 1) {
                ISOException.throwIt(Sw.WRONG_LENGTH);
            }
            sessions.use(buf[off]);
            st[PK_SESSION] = buf[off];
            off++;
            got--;
            short used = beginPacket(buf, off, got, packetMax);
            off += used;
            got -= used;
        } else {
            sessions.use(st[PK_SESSION]);
        }
        while (true) {
            consume(buf, off, got);
            got = apdu.receiveBytes(apdu.getOffsetCdata());
            if (got == 0) {
                break;
            }
            off = apdu.getOffsetCdata();
        }
        if (chained) {
            if (st[PK_LEFT] == 0) {
                abortPacket(Sw.WRONG_LENGTH); // the chain says more, the EAP length says no
            }
            return; // 9000: send the next part
        }
        if (st[PK_LEFT] != 0) {
            abortPacket(Sw.WRONG_LENGTH); // packet shorter than its EAP length field
        }
        completePacket(apdu, out);
    }

    /** Parses the EAP (and EAP-TLS) header of a new packet; returns the header's length. */
    private short beginPacket(byte[] buf, short off, short got, short packetMax) {
        if (got < EAP_HEADER_SIZE + 1) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        short eapLen = Util.getShort(buf, (short) (off + 2));
        if (buf[off] != CODE_RESPONSE || eapLen < EAP_HEADER_SIZE + 1) {
            ISOException.throwIt(Sw.EAP_UNEXPECTED);
        }
        byte type = buf[(short) (off + EAP_HEADER_SIZE)];
        byte id = buf[(short) (off + 1)];
        short headerLen = EAP_HEADER_SIZE + 1;
        short kind;
        if (type == TYPE_IDENTITY) {
            // A new conversation may start at any time: it ends the session's old one.
            endSession();
            kind = K_IDENTITY;
            st[ST_PACKET_MAX] = packetMax == 0 ? DEFAULT_PACKET_SIZE : packetMax;
            if (st[ST_PACKET_MAX] < MIN_PACKET_SIZE) {
                ISOException.throwIt(Sw.INCORRECT_P1P2);
            }
        } else if (type == TYPE_TLS) {
            if (got < EAP_TLS_HEADER_SIZE || eapLen < EAP_TLS_HEADER_SIZE
                    || id != (byte) st[ST_ID]) {
                ISOException.throwIt(Sw.EAP_UNEXPECTED);
            }
            byte flags = buf[(short) (off + EAP_TLS_HEADER_SIZE - 1)];
            headerLen = EAP_TLS_HEADER_SIZE;
            short state = st[ST_STATE];
            boolean newMessage = state == S_STARTED || state == S_SENT;
            if ((state == S_RECEIVING || state == S_SENDING) && !sessions.ownsIo()) {
                // Another session's command came between the fragments of this one's message and
                // overwrote it in the I/O buffer: the message is lost, and so is the conversation.
                endSession();
                ISOException.throwIt(Sw.EAP_UNEXPECTED);
            }
            if ((flags & FLAG_LENGTH_INCLUDED) != 0) {
                headerLen += TLS_MESSAGE_LENGTH_SIZE;
                if (got < headerLen || eapLen < headerLen) {
                    ISOException.throwIt(Sw.WRONG_LENGTH);
                }
                if (newMessage) {
                    // RFC 5216: the 4-byte TLS Message Length; the buffer bounds what we accept.
                    short hi = Util.getShort(buf, (short) (off + EAP_TLS_HEADER_SIZE));
                    short lo = Util.getShort(buf, (short) (off + EAP_TLS_HEADER_SIZE + 2));
                    if (hi != 0 || lo < 0 || lo > msgCap) {
                        ISOException.throwIt(Sw.FILE_FULL);
                    }
                    st[ST_IN_TOTAL] = lo;
                }
            } else if (newMessage) {
                st[ST_IN_TOTAL] = -1;
            }
            short payload = (short) (eapLen - headerLen);
            if (state == S_SENDING || (state == S_SENT && payload == 0)) {
                if (payload != 0 || flags != 0) {
                    ISOException.throwIt(Sw.EAP_UNEXPECTED); // only an empty acknowledgement fits
                }
                kind = K_ACK;
            } else if (newMessage || state == S_RECEIVING) {
                if (payload == 0) {
                    ISOException.throwIt(Sw.EAP_UNEXPECTED);
                }
                if (newMessage) {
                    st[ST_IN_GOT] = 0;
                    sessions.claimIo();
                }
                kind = K_DATA;
            } else {
                ISOException.throwIt(Sw.EAP_UNEXPECTED);
                return 0;
            }
            st[PK_FLAGS] = flags;
        } else {
            ISOException.throwIt(Sw.EAP_UNEXPECTED);
            return 0;
        }
        st[PK_KIND] = kind;
        st[PK_LEFT] = (short) (eapLen - headerLen);
        return headerLen;
    }

    /** Stores payload bytes of the current packet. */
    private void consume(byte[] buf, short off, short len) {
        if (len == 0) {
            return;
        }
        if (len > st[PK_LEFT]) {
            abortPacket(Sw.WRONG_LENGTH); // more bytes than the EAP length field said
        }
        if (st[PK_KIND] == K_IDENTITY) {
            short at = st[PK_NAME_LEN];
            if ((short) (at + len) > IDENTITY_MAX) {
                abortPacket(Sw.WRONG_DATA);
            }
            Util.arrayCopyNonAtomic(buf, off, name, (short) (NAME + at), len);
            st[PK_NAME_LEN] = (short) (at + len);
        } else {
            short at = st[ST_IN_GOT];
            short limit = st[ST_IN_TOTAL] < 0 ? msgCap : st[ST_IN_TOTAL];
            if (len > (short) (limit - at)) {
                abortPacket(Sw.FILE_FULL);
            }
            Util.arrayCopyNonAtomic(buf, off, io, (short) (MSG_OFF + at), len);
            counters.count(OpCounters.EEPROM_BYTES, len);
            st[ST_IN_GOT] = (short) (at + len);
        }
        st[PK_LEFT] -= len;
    }

    private void abortPacket(short sw) {
        abandonPacket();
        ISOException.throwIt(sw);
    }

    private void completePacket(APDU apdu, ResponseStream out) {
        short kind = st[PK_KIND];
        short flags = st[PK_FLAGS];
        short nameLength = st[PK_NAME_LEN];
        ram.clearShorts(PK_LEFT, PACKET_STATE_SIZE);
        if (kind == K_IDENTITY) {
            // "NAME@dtls" (an NAI realm, RFC 7542) selects DTLS 1.2 for the identity NAME (docs/apdu.md).
            short bare = DtlsFraming.stripRealm(name, NAME, nameLength);
            ram.shorts[Transients.DTLS_MODE] = bare < 0 ? (short) 0 : (short) 1;
            if (bare >= 0) {
                nameLength = bare;
            }
            MessageHandler h = directory.handlerFor(name, NAME, nameLength);
            ram.clearBytes(NAME, IDENTITY_MAX);
            if (h == null) {
                ISOException.throwIt(Sw.REFERENCED_DATA_NOT_FOUND);
            }
            h.reset();
            refs[HANDLER] = h;
            st[ST_STATE] = S_STARTED;
            sendControl(apdu, out, CODE_REQUEST, FLAG_START);
        } else if (kind == K_DATA) {
            if ((flags & FLAG_MORE_FRAGMENTS) != 0) {
                st[ST_STATE] = S_RECEIVING;
                sendControl(apdu, out, CODE_REQUEST, (byte) 0);
                return;
            }
            short len = st[ST_IN_GOT];
            if (st[ST_IN_TOTAL] >= 0 && len != st[ST_IN_TOTAL]) {
                st[ST_STATE] = S_STARTED;
                ISOException.throwIt(Sw.WRONG_LENGTH); // fragments do not add up to L
            }
            st[ST_OUT_LEN] = current().onMessage(io, MSG_OFF, len, msgCap);
            if (st[ST_OUT_LEN] == 0 && current().finished()) {
                // RFC 5216 2.1.3: the peer's Finished ended a resumed session's handshake: Success at once.
                st[ST_STATE] = S_CLOSED;
                sendControl(apdu, out, CODE_SUCCESS, (byte) 0);
                return;
            }
            counters.count(OpCounters.EEPROM_BYTES, st[ST_OUT_LEN]); // the answer, written in place
            st[ST_OUT_SENT] = 0;
            sendFragment(apdu, out);
        } else if (st[ST_STATE] == S_SENDING) {
            sendFragment(apdu, out);
        } else {
            // The host acknowledged our last fragment and has nothing to say: end or wait.
            MessageHandler h = current();
            if (h.failed()) {
                st[ST_STATE] = S_CLOSED;
                sendControl(apdu, out, CODE_FAILURE, (byte) 0);
            } else if (h.finished()) {
                st[ST_STATE] = S_CLOSED;
                sendControl(apdu, out, CODE_SUCCESS, (byte) 0);
            } else {
                st[ST_STATE] = S_STARTED;
                sendControl(apdu, out, CODE_REQUEST, (byte) 0);
            }
        }
    }

    /** Sends the next fragment of the outgoing message, header written just before its data. */
    private void sendFragment(APDU apdu, ResponseStream out) {
        short total = st[ST_OUT_LEN];
        short sent = st[ST_OUT_SENT];
        short left = (short) (total - sent);
        short max = st[ST_PACKET_MAX];
        byte flags = 0;
        short header = EAP_TLS_HEADER_SIZE;
        if ((short) (left + header) > max) {
            flags = FLAG_MORE_FRAGMENTS;
            if (sent == 0) {
                flags |= FLAG_LENGTH_INCLUDED;
                header += TLS_MESSAGE_LENGTH_SIZE;
            }
            left = (short) (max - header);
        }
        short start = (short) (MSG_OFF + sent - header);
        byte id = nextId();
        io[start] = CODE_REQUEST;
        io[(short) (start + 1)] = id;
        Util.setShort(io, (short) (start + 2), (short) (header + left));
        io[(short) (start + 4)] = TYPE_TLS;
        io[(short) (start + 5)] = flags;
        if ((flags & FLAG_LENGTH_INCLUDED) != 0) {
            Util.setShort(io, (short) (start + 6), (short) 0);
            Util.setShort(io, (short) (start + 8), total);
        }
        counters.count(OpCounters.EEPROM_BYTES, header);
        st[ST_OUT_SENT] = (short) (sent + left);
        st[ST_STATE] = (flags & FLAG_MORE_FRAGMENTS) != 0 ? S_SENDING : S_SENT;
        out.send(apdu, io, start, (short) (header + left));
    }

    /** Sends a packet without data: Start, an acknowledgement, Success or Failure. */
    private void sendControl(APDU apdu, ResponseStream out, byte code, byte flags) {
        byte[] buf = apdu.getBuffer();
        byte id = code == CODE_REQUEST ? nextId() : (byte) st[ST_ID];
        buf[0] = code;
        buf[1] = id;
        short len = EAP_HEADER_SIZE;
        if (code == CODE_REQUEST) {
            buf[4] = TYPE_TLS;
            buf[5] = flags;
            len = EAP_TLS_HEADER_SIZE;
        }
        Util.setShort(buf, (short) 2, len);
        apdu.setOutgoingAndSend((short) 0, len);
    }

    private byte nextId() {
        byte id = (byte) (st[ST_ID] + 1);
        st[ST_ID] = (short) (id & 0xFF);
        return id;
    }
}
