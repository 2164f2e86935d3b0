package org.setls.applet;

import javacard.framework.Util;

/** Writes short BER-TLVs (one-byte tag and length) of the SELECT response. */
final class Tlv {
    private Tlv() {
    }

    /** tag 01 value; returns the offset after it. */
    static short putByte(byte[] buf, short off, byte tag, byte value) {
        buf[off++] = tag;
        buf[off++] = 1;
        buf[off++] = value;
        return off;
    }

    /** tag 02 value (big-endian); returns the offset after it. */
    static short putShort(byte[] buf, short off, byte tag, short value) {
        buf[off++] = tag;
        buf[off++] = 2;
        return Util.setShort(buf, off, value);
    }

    /** tag 02 first second; returns the offset after it. */
    static short putPair(byte[] buf, short off, byte tag, byte first, byte second) {
        buf[off++] = tag;
        buf[off++] = 2;
        buf[off++] = first;
        buf[off++] = second;
        return off;
    }
}
