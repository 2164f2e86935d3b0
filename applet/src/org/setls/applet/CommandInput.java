package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.Util;

/**
 * Collects a command's data into a buffer across ISO 7816-4 command chaining (CLA bit 0x10) and
 * extended length, whichever the reader uses, without going through an intermediate copy.
 * RAM: Transients.INPUT_STATE (STATE_SIZE shorts, session state: a chain spans APDUs).
 */
final class CommandInput {
    private static final short ST_INS = Transients.INPUT_STATE;        // INS of the chain in progress, 0 if none
    private static final short ST_LENGTH = (short) (ST_INS + 1);      // bytes collected so far
    static final short STATE_SIZE = 2;

    private final short[] st;

    /** Allocated once, at install; the state is the arena's. */
    CommandInput(Transients ram) {
        st = ram.shorts;
    }

    /** Any other command breaks a chain. */
    void abandonUnless(byte ins) {
        if (st[ST_INS] != (short) (ins & 0xFF)) {
            st[ST_INS] = 0;
            st[ST_LENGTH] = 0;
        }
    }

    /**
     * Appends this APDU's data at dst[dstOff + collected]. Returns the total length when the
     * command is complete, or -1 after a link of a chain (the caller then answers 9000).
     */
    short receive(APDU apdu, byte[] dst, short dstOff, short cap) {
        return collect(apdu, apdu.setIncomingAndReceive(), dst, dstOff, cap);
    }

    /**
     * The data of the command, with no chain around it, if the APDU buffer holds all of it: its
     * length (at apdu.getOffsetCdata()); -1 otherwise. {@code got} is what setIncomingAndReceive()
     * returned. (The command's Lc is read from the header: jcardsim's getIncomingLength() reads a
     * short Lc as a signed byte.)
     */
    short wholeInBuffer(APDU apdu, short got) {
        byte[] buf = apdu.getBuffer();
        if ((buf[ISO7816.OFFSET_CLA] & Constants.CLA_CHAINING) != 0 || st[ST_INS] != 0) {
            return -1;
        }
        short off = apdu.getOffsetCdata();
        short lc = off == ISO7816.OFFSET_CDATA ? (short) (buf[ISO7816.OFFSET_LC] & 0xFF)
                : Util.getShort(buf, (short) (ISO7816.OFFSET_LC + 1));
        return got == lc ? got : (short) -1;
    }

    /**
     * As receive(), the first {@code got} bytes already received into the APDU buffer (by
     * setIncomingAndReceive()).
     */
    short collect(APDU apdu, short got, byte[] dst, short dstOff, short cap) {
        byte[] buf = apdu.getBuffer();
        boolean chained = (buf[ISO7816.OFFSET_CLA] & Constants.CLA_CHAINING) != 0;
        short at = st[ST_LENGTH];
        while (got > 0) {
            if (got > (short) (cap - at)) {
                st[ST_INS] = 0;
                st[ST_LENGTH] = 0;
                ISOException.throwIt(Sw.FILE_FULL);
            }
            Util.arrayCopyNonAtomic(buf, apdu.getOffsetCdata(), dst, (short) (dstOff + at), got);
            at += got;
            got = apdu.receiveBytes(apdu.getOffsetCdata());
        }
        if (chained) {
            st[ST_INS] = (short) (buf[ISO7816.OFFSET_INS] & 0xFF);
            st[ST_LENGTH] = at;
            return -1;
        }
        st[ST_INS] = 0;
        st[ST_LENGTH] = 0;
        return at;
    }
}
