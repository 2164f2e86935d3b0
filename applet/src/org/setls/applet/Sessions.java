package org.setls.applet;

import javacard.framework.ISOException;
import javacard.framework.Util;

/**
 * The card's TLS sessions: SESSIONS slots, each named by a handle (0 to SESSIONS - 1) that the
 * host puts in its commands (docs/apdu.md), and HANDSHAKES handshake slots, lent to a session from
 * its EAP-Response/Identity to the end of its handshake. The host decides which handle serves which
 * connection and which idle session to close when every slot is taken (CLOSE SESSION, or the
 * PROTECT of a close_notify); the card serves the commands of any session in any order.
 *
 * The code of EapTls, TlsServer, ClientHelloParser and RecordCipher reads its state at fixed
 * offsets of the arena, the <b>active</b> session's (Transients.SESSION_BYTES, SESSION_SHORTS,
 * SESSION_REFS) and the active handshake's (HANDSHAKE_BYTES, HANDSHAKE_SHORTS). {@link #use}
 * makes the named session active: it copies the active regions to the slot of the session they
 * belong to and the named session's slot into them (RAM to RAM, a few hundred bytes), and brings
 * that session's handshake, if it has one, into the handshake area the same way. The price is one
 * copy of each area beyond the slots; the gain, code that knows nothing of sessions.
 *
 * What cannot be copied, the platform's objects, is held per handshake slot by its user: TlsServer
 * has two transcript digests per slot (a running SHA-256 cannot be read out of a MessageDigest).
 * The record keys are set into the two key objects of RecordCipher for every record.
 *
 * A message in the I/O buffer belongs to the session that sent it ({@link #claimIo}): the EAP
 * fragments of one message come in a row; a command of another session between them overwrites
 * the buffer, and the interrupted session's conversation then fails (EapTls).
 *
 * RAM, session state of the arena: Transients.SESSIONS_STATE (STATE_SIZE shorts), the slots
 * Transients.SESSION_SLOTS, SESSION_SHORT_SLOTS, SESSION_REF_SLOTS, HANDSHAKE_SLOTS,
 * HANDSHAKE_SHORT_SLOTS and each session's SESSION_LINK. All zero is the initial state: no
 * session active, every slot free.
 */
final class Sessions {
    /** Session slots (SELECT tag 85): 4 in the record phase while 2 more are in their handshake. */
    static final short SESSIONS = 6;
    /** Handshake slots (SELECT tag 86): handshakes in progress at once. */
    static final short HANDSHAKES = 2;

    // Card-wide state: shorts of the arena from Transients.SESSIONS_STATE; each a slot + 1, 0: none.
    private static final short ST_CURRENT = Transients.SESSIONS_STATE;       // the active session
    private static final short ST_ACTIVE_HS = (short) (ST_CURRENT + 1);      // the handshake in the handshake area
    private static final short ST_IO_OWNER = (short) (ST_CURRENT + 2);       // the session whose message is in the I/O buffer
    private static final short ST_ADDRESSED = (short) (ST_CURRENT + 3);      // 1 once this command named its session
    private static final short ST_HS_OWNER = (short) (ST_CURRENT + 4);       // HANDSHAKES shorts: each slot's session
    static final short STATE_SIZE = (short) (4 + HANDSHAKES);
    /** A session's handshake slot + 1 (0: none): a short of the active session at Transients.SESSION_LINK. */
    private static final short LINK = Transients.SESSION_LINK;
    static final short LINK_SIZE = 1;

    private final Transients ram;
    private final short[] st;

    /** Allocated once, at install; the state is the arena's. */
    Sessions(Transients ram) {
        this.ram = ram;
        st = ram.shorts;
    }

    /**
     * Forgets every TLS session (SELECT; a deselect does the same through CLEAR_ON_DESELECT). The
     * operator session's card-wide regions (OPERATOR_SECRETS, OPERATOR_STATE) are OperatorSession's.
     */
    void resetAll() {
        ram.clearBytes(Transients.SESSION_BYTES, (short) (Transients.HANDSHAKE_KEYS - Transients.SESSION_BYTES));
        ram.clearShorts(Transients.SESSIONS_STATE, Transients.SESSIONS_STATE_SIZE);
        // OPERATOR_STATE lies between SESSIONS_STATE and SESSION_SHORTS: not a TLS session's.
        ram.clearShorts(Transients.SESSION_SHORTS, (short) (Transients.SHORT_SCRATCH - Transients.SESSION_SHORTS));
        for (short i = Transients.SESSION_REFS; i < Transients.REFS_SIZE; i++) {
            ram.refs[i] = null;
        }
    }

    /** A new command: it has named no session yet. */
    void beginCommand() {
        st[ST_ADDRESSED] = 0;
    }

    /** True once the command named its session (the dispatcher then ends that session if it fails). */
    boolean addressed() {
        return st[ST_ADDRESSED] != 0;
    }

    /** Makes session {@code handle} the active one (6A86 for a handle the card does not have). */
    void use(short handle) {
        if (handle < 0 || handle >= SESSIONS) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        st[ST_ADDRESSED] = 1;
        short current = (short) (st[ST_CURRENT] - 1);
        if (current != handle) {
            if (current >= 0) {
                copySession(current, false);
            }
            copySession(handle, true);
            st[ST_CURRENT] = (short) (handle + 1);
        }
        short hs = (short) (st[LINK] - 1);
        if (hs >= 0) {
            activateHandshake(hs);
        }
    }

    /** The active session's handle, or -1. */
    short current() {
        return (short) (st[ST_CURRENT] - 1);
    }

    /** The active session's handshake slot, or -1. */
    short handshakeSlot() {
        return (short) (st[LINK] - 1);
    }

    /**
     * Lends a free handshake slot to the active session, its area cleared; 6F07 when every slot is
     * lent (the host lets one handshake finish, or closes one).
     */
    short claimHandshake() {
        short hs = handshakeSlot();
        if (hs < 0) {
            for (short k = 0; k < HANDSHAKES; k++) {
                if (st[(short) (ST_HS_OWNER + k)] == 0) {
                    hs = k;
                    break;
                }
            }
            if (hs < 0) {
                ISOException.throwIt(Sw.NO_HANDSHAKE_SLOT);
            }
            st[(short) (ST_HS_OWNER + hs)] = st[ST_CURRENT];
            st[LINK] = (short) (hs + 1);
        }
        activateHandshake(hs);
        clearActiveHandshake();
        return hs;
    }

    /** The active session's handshake ended (or the session did): its slot is wiped and free. */
    void releaseHandshake() {
        short hs = handshakeSlot();
        if (hs < 0) {
            return;
        }
        activateHandshake(hs);
        clearActiveHandshake();
        ram.clearBytes((short) (Transients.HANDSHAKE_SLOTS + (short) (hs * Transients.HANDSHAKE_BYTES_SIZE)),
                Transients.HANDSHAKE_BYTES_SIZE);
        ram.clearShorts((short) (Transients.HANDSHAKE_SHORT_SLOTS + (short) (hs * Transients.HANDSHAKE_SHORTS_SIZE)),
                Transients.HANDSHAKE_SHORTS_SIZE);
        st[ST_ACTIVE_HS] = 0;
        st[(short) (ST_HS_OWNER + hs)] = 0;
        st[LINK] = 0;
    }

    /** The active session's message is now in the I/O buffer. */
    void claimIo() {
        st[ST_IO_OWNER] = st[ST_CURRENT];
    }

    /**
     * A command of no session (SIGN CSR, GET DATA of the PSK identities) writes to the I/O buffer:
     * the message of the session that had it is gone, and that session's conversation then fails.
     */
    void releaseIo() {
        st[ST_IO_OWNER] = 0;
    }

    /** True if the I/O buffer still holds the active session's message. */
    boolean ownsIo() {
        return st[ST_IO_OWNER] != 0 && st[ST_IO_OWNER] == st[ST_CURRENT];
    }

    /**
     * Wipes the active session's own areas (its record keys, sequence numbers, states, references)
     * and its slot's stored copy: the session is over, its handle free. Its handshake, if any, must
     * have been released first.
     */
    void clearActive() {
        short slot = current();
        if (slot >= 0) {
            ram.clearBytes((short) (Transients.SESSION_SLOTS + (short) (slot * Transients.SESSION_BYTES_SIZE)),
                    Transients.SESSION_BYTES_SIZE);
            ram.clearShorts((short) (Transients.SESSION_SHORT_SLOTS + (short) (slot * Transients.SESSION_SHORTS_SIZE)),
                    Transients.SESSION_SHORTS_SIZE);
            short refs = (short) (Transients.SESSION_REF_SLOTS + (short) (slot * Transients.SESSION_REFS_SIZE));
            for (short i = 0; i < Transients.SESSION_REFS_SIZE; i++) {
                ram.refs[(short) (refs + i)] = null;
            }
        }
        ram.clearBytes(Transients.SESSION_BYTES, Transients.SESSION_BYTES_SIZE);
        ram.clearShorts(Transients.SESSION_SHORTS, Transients.SESSION_SHORTS_SIZE);
        for (short i = 0; i < Transients.SESSION_REFS_SIZE; i++) {
            ram.refs[(short) (Transients.SESSION_REFS + i)] = null;
        }
        if (st[ST_IO_OWNER] == st[ST_CURRENT]) {
            st[ST_IO_OWNER] = 0;
        }
    }

    private void clearActiveHandshake() {
        ram.clearBytes(Transients.HANDSHAKE_BYTES, Transients.HANDSHAKE_BYTES_SIZE);
        ram.clearShorts(Transients.HANDSHAKE_SHORTS, Transients.HANDSHAKE_SHORTS_SIZE);
    }

    /** Brings handshake slot {@code hs} into the handshake area, the one there back to its slot. */
    private void activateHandshake(short hs) {
        short active = (short) (st[ST_ACTIVE_HS] - 1);
        if (active == hs) {
            return;
        }
        if (active >= 0) {
            copyHandshake(active, false);
        }
        copyHandshake(hs, true);
        st[ST_ACTIVE_HS] = (short) (hs + 1);
    }

    /** Copies session {@code slot}'s stored state into the active areas ({@code in}) or back. */
    private void copySession(short slot, boolean in) {
        short bytes = (short) (Transients.SESSION_SLOTS + (short) (slot * Transients.SESSION_BYTES_SIZE));
        short shorts = (short) (Transients.SESSION_SHORT_SLOTS + (short) (slot * Transients.SESSION_SHORTS_SIZE));
        short refs = (short) (Transients.SESSION_REF_SLOTS + (short) (slot * Transients.SESSION_REFS_SIZE));
        if (in) {
            Util.arrayCopyNonAtomic(ram.bytes, bytes, ram.bytes, Transients.SESSION_BYTES, Transients.SESSION_BYTES_SIZE);
            ram.copyShorts(shorts, Transients.SESSION_SHORTS, Transients.SESSION_SHORTS_SIZE);
            ram.copyRefs(refs, Transients.SESSION_REFS, Transients.SESSION_REFS_SIZE);
        } else {
            Util.arrayCopyNonAtomic(ram.bytes, Transients.SESSION_BYTES, ram.bytes, bytes, Transients.SESSION_BYTES_SIZE);
            ram.copyShorts(Transients.SESSION_SHORTS, shorts, Transients.SESSION_SHORTS_SIZE);
            ram.copyRefs(Transients.SESSION_REFS, refs, Transients.SESSION_REFS_SIZE);
        }
    }

    /** Copies handshake {@code slot}'s stored state into the handshake area ({@code in}) or back. */
    private void copyHandshake(short slot, boolean in) {
        short bytes = (short) (Transients.HANDSHAKE_SLOTS + (short) (slot * Transients.HANDSHAKE_BYTES_SIZE));
        short shorts = (short) (Transients.HANDSHAKE_SHORT_SLOTS + (short) (slot * Transients.HANDSHAKE_SHORTS_SIZE));
        if (in) {
            Util.arrayCopyNonAtomic(ram.bytes, bytes, ram.bytes, Transients.HANDSHAKE_BYTES,
                    Transients.HANDSHAKE_BYTES_SIZE);
            ram.copyShorts(shorts, Transients.HANDSHAKE_SHORTS, Transients.HANDSHAKE_SHORTS_SIZE);
        } else {
            Util.arrayCopyNonAtomic(ram.bytes, Transients.HANDSHAKE_BYTES, ram.bytes, bytes,
                    Transients.HANDSHAKE_BYTES_SIZE);
            ram.copyShorts(Transients.HANDSHAKE_SHORTS, shorts, Transients.HANDSHAKE_SHORTS_SIZE);
        }
    }
}
