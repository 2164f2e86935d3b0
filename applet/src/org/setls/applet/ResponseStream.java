package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISOException;

/**
 * Sends a response longer than one APDU: as much as the command's Le allows now, the rest on
 * GET RESPONSE, announced with 61xx (the applet does it itself, Quirks: NO_T0_GET_RESPONSE).
 * Under extended length one APDU usually carries it all. The pending response lives in the
 * arena (offset and length in Transients.RESPONSE_STATE, the source array in
 * Transients.RESPONSE_SOURCE), so a reset or deselect drops it; any command other than
 * GET RESPONSE abandons it.
 */
final class ResponseStream {
    private static final short OFF = Transients.RESPONSE_STATE;
    private static final short REMAINING = (short) (OFF + 1);
    static final short STATE_SIZE = 2;
    private static final short SOURCE = Transients.RESPONSE_SOURCE;

    private final short[] state;
    private final Object[] refs;

    /** Allocated once, at install; the state is the arena's. */
    ResponseStream(Transients ram) {
        state = ram.shorts;
        refs = ram.refs;
    }

    void abandon() {
        state[REMAINING] = 0;
        refs[SOURCE] = null;
    }

    /** Starts sending {@code len} bytes of {@code src} from {@code off}; returns only if all fit. */
    void send(APDU apdu, byte[] src, short off, short len) {
        refs[SOURCE] = src;
        state[OFF] = off;
        state[REMAINING] = len;
        sendNext(apdu);
    }

    /** Sends the next chunk of the pending response (GET RESPONSE). */
    void sendNext(APDU apdu) {
        short remaining = state[REMAINING];
        byte[] src = (byte[]) refs[SOURCE];
        if (src == null) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        short le = apdu.setOutgoing();
        if (le <= 0) {
            // Extended Le = 0000 means 65536, which a short cannot hold (Quirks: LE_EXTENDED_ZERO).
            le = Quirks.LE_EXTENDED_ZERO;
        }
        short n = remaining < le ? remaining : le;
        apdu.setOutgoingLength(n);
        apdu.sendBytesLong(src, state[OFF], n);
        state[OFF] += n;
        remaining -= n;
        state[REMAINING] = remaining;
        if (remaining == 0) {
            refs[SOURCE] = null;
            return;
        }
        // Tell the host how much is left: 61xx, xx = 00 when 256 or more remain.
        ISOException.throwIt((short) (Sw.BYTES_REMAINING_00 | (remaining > 255 ? 0 : remaining)));
    }
}
