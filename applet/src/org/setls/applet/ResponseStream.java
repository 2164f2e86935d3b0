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

    /**
     * Sets the direction to outgoing and returns how many bytes this answer may carry. A short
     * command carries at most 256 bytes back, whatever its Le says: a short command without Le
     * (case 1 or 3) is answered as if its Le were 00, 256 bytes and 61xx for the rest, since
     * neither jcardsim nor a T=0 card tells an absent Le from 00 (Quirks: ABSENT_LE). An extended
     * Le of 0000 means 65536, which a short cannot hold (Quirks: LE_EXTENDED_ZERO).
     */
    /**
     * The APDU buffer's length as a short: jcardsim's buffer for extended commands has 32777
     * bytes, more than a short holds (Quirks: ABSENT_LE); a card's fits.
     */
    static short bufferLength(byte[] buf) {
        return buf.length > Quirks.LE_EXTENDED_ZERO ? Quirks.LE_EXTENDED_ZERO : (short) buf.length;
    }

    static short outgoingLimit(APDU apdu) {
        short le = apdu.setOutgoing();
        boolean extended = apdu.getBuffer().length > Quirks.SHORT_APDU_BUFFER;
        if (le <= 0) {
            le = extended ? Quirks.LE_EXTENDED_ZERO : Quirks.SHORT_LE_MAX;
        }
        if (!extended && le > Quirks.SHORT_LE_MAX) {
            le = Quirks.SHORT_LE_MAX;
        }
        return le;
    }

    /** Sends the next chunk of the pending response (GET RESPONSE). */
    void sendNext(APDU apdu) {
        short remaining = state[REMAINING];
        byte[] src = (byte[]) refs[SOURCE];
        if (src == null) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        short le = outgoingLimit(apdu);
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
