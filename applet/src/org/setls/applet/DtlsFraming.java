package org.setls.applet;

import javacard.framework.Util;

/**
 * DTLS 1.2 (RFC 6347) beside TLS 1.2: the conversation's mode, the client's flight turned into
 * TLS records for TlsServer, the handshake messages' sequence numbers, and the anti-replay
 * window of received records (card mode).
 *
 * The host reassembles the client's handshake messages (RFC 6347 4.2.3; docs/apdu.md): each
 * DTLS handshake message reaches the card whole, fragment_offset 0 and fragment_length its
 * length, its message_seq the next one. toTls() checks that and rewrites the records in place
 * as TLS records (5-byte headers, 4-byte handshake headers: the parsers are TLS's); the
 * transcript hashes each message as DTLS sends it unfragmented (4.2.6), with its message_seq,
 * which TlsServer puts back (dtlsHeader()). Records of epoch 1 (the client's Finished) keep
 * their epoch and sequence number as the AEAD's seq_num (4.1.2.1), set into RecordCipher.
 *
 * RAM, from the arena: the mode, a short of the active session at Transients.DTLS_MODE; the next
 * message_seq of each side, shorts of the active handshake at Transients.DTLS_HANDSHAKE; the
 * replay window, 8 bytes of the active session at Transients.DTLS_WINDOW (RecordCipher uses it).
 */
final class DtlsFraming {
    static final short MODE_SIZE = 1;
    static final short HANDSHAKE_STATE_SIZE = 2;
    static final short WINDOW_SIZE = 8;
    private static final short MODE = Transients.DTLS_MODE;
    private static final short SEQ_IN = Transients.DTLS_HANDSHAKE;          // the client's next message_seq
    private static final short SEQ_OUT = (short) (Transients.DTLS_HANDSHAKE + 1); // the server's next
    /** The realm of an EAP identity that selects DTLS (docs/apdu.md): "server@dtls". */
    static final byte[] REALM = {'@', 'd', 't', 'l', 's'};

    private final short[] st;
    private final TlsAlert alert;
    private final RecordCipher cipher;

    DtlsFraming(Transients ram, TlsAlert alert, RecordCipher cipher) {
        st = ram.shorts;
        this.alert = alert;
        this.cipher = cipher;
    }

    boolean on() {
        return st[MODE] != 0;
    }

    /**
     * Sets the session's mode. The ClientHello that carries the cookie sets both sides' numbers:
     * it is message 1 of the client, and the ServerHello message 1 of the server (RFC 6347 4.2.2:
     * the host sent the HelloVerifyRequest as message 0), or whatever the client numbered it.
     */
    void start(boolean dtls) {
        st[MODE] = dtls ? (short) 1 : (short) 0;
        st[SEQ_IN] = -1;
        st[SEQ_OUT] = -1;
    }

    /** The next message_seq of the client's (in) or the server's messages; moves it on. */
    short nextSeq(boolean client) {
        short k = client ? SEQ_IN : SEQ_OUT;
        short seq = st[k];
        st[k] = (short) (seq + 1);
        return seq;
    }

    short peekSeq(boolean client) {
        return st[client ? SEQ_IN : SEQ_OUT];
    }

    /** Length of the identity without the DTLS realm if it ends with it, else -1. */
    static short stripRealm(byte[] name, short off, short len) {
        short r = (short) REALM.length;
        if (len <= r || Util.arrayCompare(name, (short) (off + len - r), REALM, (short) 0, r) != 0) {
            return -1;
        }
        return (short) (len - r);
    }

    /**
     * Rewrites the DTLS records at buf[off, off + len) in place as TLS records; returns their new
     * length. Raises the alert RFC 6347 / 5246 name for a record or message out of order.
     */
    short toTls(byte[] buf, short off, short len) {
        short end = (short) (off + len);
        short w = off;
        short expect = st[SEQ_IN];
        for (short p = off; p < end; ) {
            if ((short) (end - p) < Tls.DTLS_RECORD_HEADER_SIZE) {
                alert.raise(Tls.ALERT_DECODE_ERROR);
            }
            byte type = buf[p];
            if (buf[(short) (p + 1)] != Tls.VERSION_MAJOR_DTLS) {
                alert.raise(Tls.ALERT_PROTOCOL_VERSION);
            }
            short epoch = Util.getShort(buf, (short) (p + 3));
            short fragment = Util.getShort(buf, (short) (p + 11));
            short body = (short) (p + Tls.DTLS_RECORD_HEADER_SIZE);
            if (fragment < 0 || fragment > (short) (end - body)) {
                alert.raise(Tls.ALERT_DECODE_ERROR); // the host hands over whole records
            }
            if (epoch == 1) {
                // The client's Finished (or an alert) under the new keys: its epoch and sequence
                // number are the AEAD's seq_num (RFC 6347 4.1.2.1).
                cipher.setReadSeq(buf, (short) (p + 3));
                w = tlsHeader(buf, w, type, fragment);
                w = Util.arrayCopyNonAtomic(buf, body, buf, w, fragment);
            } else if (epoch != 0) {
                alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
            } else if (type == Tls.CONTENT_HANDSHAKE) {
                short header = w;
                w += Tls.RECORD_HEADER_SIZE;
                short stop = (short) (body + fragment);
                for (short q = body; q < stop; ) {
                    if ((short) (stop - q) < Tls.DTLS_HS_HEADER_SIZE) {
                        alert.raise(Tls.ALERT_DECODE_ERROR);
                    }
                    short length = Util.getShort(buf, (short) (q + 2));
                    if (buf[(short) (q + 1)] != 0 || length < 0
                            || length > (short) (stop - q - Tls.DTLS_HS_HEADER_SIZE)) {
                        alert.raise(Tls.ALERT_DECODE_ERROR);
                    }
                    if (expect < 0) {
                        // The ClientHello: its message_seq numbers the rest of the handshake.
                        expect = Util.getShort(buf, (short) (q + 4));
                        st[SEQ_IN] = expect;
                        st[SEQ_OUT] = expect;
                    }
                    if (Util.getShort(buf, (short) (q + 4)) != expect) {
                        alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE); // the host passes messages in order
                    }
                    // fragment_offset 0 and fragment_length the whole length: one unfragmented message.
                    if (buf[(short) (q + 6)] != 0 || Util.getShort(buf, (short) (q + 7)) != 0
                            || buf[(short) (q + 9)] != 0 || Util.getShort(buf, (short) (q + 10)) != length) {
                        alert.raise(Tls.ALERT_UNEXPECTED_MESSAGE);
                    }
                    expect++;
                    w = Util.arrayCopyNonAtomic(buf, q, buf, w, Tls.HS_HEADER_SIZE);
                    w = Util.arrayCopyNonAtomic(buf, (short) (q + Tls.DTLS_HS_HEADER_SIZE), buf, w, length);
                    q = (short) (q + Tls.DTLS_HS_HEADER_SIZE + length);
                }
                tlsHeader(buf, header, type, (short) (w - header - Tls.RECORD_HEADER_SIZE));
            } else {
                w = tlsHeader(buf, w, type, fragment);
                w = Util.arrayCopyNonAtomic(buf, body, buf, w, fragment);
            }
            p = (short) (body + fragment);
        }
        return (short) (w - off);
    }

    private static short tlsHeader(byte[] buf, short w, byte type, short length) {
        buf[w] = type;
        Util.setShort(buf, (short) (w + 1), Tls.VERSION_TLS12);
        Util.setShort(buf, (short) (w + 3), length);
        return (short) (w + Tls.RECORD_HEADER_SIZE);
    }

    /**
     * Writes the 8 bytes a DTLS handshake header has beyond TLS's (message_seq, fragment_offset
     * 0, fragment_length = length) at out[o]; returns o + 8.
     */
    static short dtlsHeaderTail(byte[] out, short o, short seq, byte lengthHigh, short length) {
        o = Util.setShort(out, o, seq);
        out[o++] = 0;
        o = Util.setShort(out, o, (short) 0);
        out[o++] = lengthHigh;
        return Util.setShort(out, o, length);
    }

    /** Writes a record header of epoch 0 at buf[w] (the host numbers epoch 0's records); returns w + 13. */
    static short recordHeader(byte[] buf, short w, byte type, short length) {
        buf[w] = type;
        Util.setShort(buf, (short) (w + 1), Tls.VERSION_DTLS12);
        Util.arrayFillNonAtomic(buf, (short) (w + 3), (short) 8, (byte) 0);
        Util.setShort(buf, (short) (w + 11), length);
        return (short) (w + Tls.DTLS_RECORD_HEADER_SIZE);
    }
}
