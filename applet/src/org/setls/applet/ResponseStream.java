package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;

/**
 * Sends a response longer than one APDU: as much as the command's Le allows now, the rest on
 * GET RESPONSE, announced with 61xx. Under extended length one APDU usually carries it all.
 * The pending response lives in RAM (offset, length, source array), so a reset or deselect
 * drops it; any command other than GET RESPONSE abandons it.
 */
final class ResponseStream {
    private static final short OFF = 0;
    private static final short REMAINING = 1;
    private static final short STATE_SIZE = 2;

    private final short[] state;
    private final Object[] source;

    /** Allocated once, at install. */
    ResponseStream() {
        state = JCSystem.makeTransientShortArray(STATE_SIZE, JCSystem.CLEAR_ON_DESELECT);
        source = JCSystem.makeTransientObjectArray((short) 1, JCSystem.CLEAR_ON_DESELECT);
    }

    void abandon() {
        state[REMAINING] = 0;
        source[0] = null;
    }

    boolean pending() {
        return state[REMAINING] != 0;
    }

    /** Starts sending {@code len} bytes of {@code src} from {@code off}; returns only if all fit. */
    void send(APDU apdu, byte[] src, short off, short len) {
        source[0] = src;
        state[OFF] = off;
        state[REMAINING] = len;
        sendNext(apdu);
    }

    /** Sends the next chunk of the pending response (GET RESPONSE). */
    void sendNext(APDU apdu) {
        short remaining = state[REMAINING];
        byte[] src = (byte[]) source[0];
        if (src == null) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        short le = apdu.setOutgoing();
        if (le <= 0) {
            // Extended Le = 0000 means 65536, which a short cannot hold (jcardsim returns 0).
            le = 0x7FFF;
        }
        short n = remaining < le ? remaining : le;
        apdu.setOutgoingLength(n);
        apdu.sendBytesLong(src, state[OFF], n);
        state[OFF] += n;
        remaining -= n;
        state[REMAINING] = remaining;
        if (remaining == 0) {
            source[0] = null;
            return;
        }
        // Tell the host how much is left: 61xx, xx = 00 when 256 or more remain.
        ISOException.throwIt((short) (Sw.BYTES_REMAINING_00 | (remaining > 255 ? 0 : remaining)));
    }

    /** Copies a short response through the APDU buffer (SELECT, status commands). */
    static void sendSmall(APDU apdu, byte[] src, short off, short len) {
        byte[] buf = apdu.getBuffer();
        Util.arrayCopyNonAtomic(src, off, buf, (short) 0, len);
        apdu.setOutgoingAndSend((short) 0, len);
    }
}
