package org.setls.applet;

import javacard.framework.ISOException;
import javacard.framework.Util;

/**
 * A strict reader of DER (X.690) for what the card checks itself: the CertificationRequestInfo it
 * signs and the subjectPublicKeyInfo of a certificate it is asked to present. Lengths in short or
 * long form up to two bytes (the card's messages are below 32 KB); indefinite lengths, lengths
 * that do not fit their parent, and non-minimal encodings are refused with 6A80 (Sw.WRONG_DATA).
 * Stateless: every method takes the element's offset and the end of its parent.
 */
final class Der {
    static final byte SEQUENCE = 0x30;
    static final byte INTEGER = 0x02;
    static final byte BIT_STRING = 0x03;
    static final byte CONTEXT_0 = (byte) 0xA0;

    private Der() {
    }

    /** Offset of the contents of the element at {@code off} (whose tag must be {@code tag}). */
    static short body(byte[] buf, short off, short end, byte tag) {
        if ((short) (end - off) < 2 || buf[off] != tag) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        short first = (short) (buf[(short) (off + 1)] & 0xFF);
        if (first < 0x80) {
            return (short) (off + 2);
        }
        if (first == 0x81) {
            if ((short) (end - off) < 3 || (short) (buf[(short) (off + 2)] & 0xFF) < 0x80) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
            return (short) (off + 3);
        }
        if (first == 0x82) {
            if ((short) (end - off) < 4 || buf[(short) (off + 2)] == 0 || buf[(short) (off + 2)] < 0) {
                ISOException.throwIt(Sw.WRONG_DATA); // non-minimal, or 32 KB and more
            }
            return (short) (off + 4);
        }
        ISOException.throwIt(Sw.WRONG_DATA);
        return 0;
    }

    /** Offset just after the element at {@code off} with tag {@code tag}; it must end by {@code end}. */
    static short skip(byte[] buf, short off, short end, byte tag) {
        short contents = body(buf, off, end, tag);
        short first = (short) (buf[(short) (off + 1)] & 0xFF);
        short length;
        if (first < 0x80) {
            length = first;
        } else if (first == 0x81) {
            length = (short) (buf[(short) (off + 2)] & 0xFF);
        } else {
            length = Util.getShort(buf, (short) (off + 2));
        }
        if (length > (short) (end - contents)) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        return (short) (contents + length);
    }

    /** The tag of the element at {@code off} (6A80 if there is none before {@code end}). */
    static byte tag(byte[] buf, short off, short end) {
        if (off >= end) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        return buf[off];
    }
}
