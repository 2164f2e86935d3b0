package org.setls.applet;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.licel.jcardsim.base.Simulator;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** SessionCache: the session's state sealed in entries and tickets, opened only when unaltered. */
class SessionCacheTest {
    private Transients ram;
    private SessionCache cache;
    private final byte[] state = new byte[SessionCache.STATE_SIZE];
    private final byte[] out = new byte[SessionCache.STATE_SIZE];

    @BeforeEach
    void card() {
        new Simulator();
        ram = new Transients();
        cache = ClientHelloParserTest.cache(ram);
        for (short i = 0; i < state.length; i++) {
            state[i] = (byte) (i * 7 + 1);
        }
    }

    /** A claimed entry with the state sealed in it; returns the claim. */
    private short sealedClaim() {
        short claim = cache.claim();
        cache.seal(claim, state, (short) 0);
        return claim;
    }

    @Test
    void anEntryOpensOnlyOnceValidated() {
        short claim = sealedClaim();
        short e = SessionCache.entryOf(claim);
        assertFalse(cache.openEntry(e, out, (short) 0));
        cache.validate(claim);
        assertTrue(cache.openEntry(e, out, (short) 0));
        assertArrayEquals(state, out);
        cache.invalidate(e);
        assertFalse(cache.openEntry(e, out, (short) 0));
    }

    @Test
    void aTicketOpensWithItsStateAndNamesTheCardInClear() {
        short e = SessionCache.entryOf(sealedClaim());
        byte[] ticket = new byte[SessionCache.TICKET_SIZE];
        assertEquals(SessionCache.TICKET_SIZE, cache.writeTicket(e, ticket, (short) 0));
        byte[] keyId = new byte[SessionCache.KEY_ID_SIZE];
        cache.writeKeyId(keyId, (short) 0);
        assertArrayEquals(keyId, Arrays.copyOf(ticket, SessionCache.KEY_ID_SIZE));
        assertTrue(cache.openTicket(ticket, (short) 0, SessionCache.TICKET_SIZE, out, (short) 0));
        assertArrayEquals(state, out);
    }

    @Test
    void aTicketAlteredInAnyByteDoesNotOpenAndLeavesNothing() {
        short e = SessionCache.entryOf(sealedClaim());
        byte[] ticket = new byte[SessionCache.TICKET_SIZE];
        cache.writeTicket(e, ticket, (short) 0);
        for (int i = 0; i < ticket.length; i++) {
            ticket[i] ^= 0x01;
            Arrays.fill(out, (byte) 0x55);
            assertFalse(cache.openTicket(ticket, (short) 0, SessionCache.TICKET_SIZE, out, (short) 0), "byte " + i);
            if (i >= SessionCache.KEY_ID_SIZE) {
                assertArrayEquals(new byte[SessionCache.STATE_SIZE], out, "byte " + i); // wiped
            }
            ticket[i] ^= 0x01;
        }
        assertFalse(cache.openTicket(ticket, (short) 0, (short) (SessionCache.TICKET_SIZE - 1), out, (short) 0));
    }

    @Test
    void anotherCardsTicketDoesNotOpen() {
        short e = SessionCache.entryOf(sealedClaim());
        byte[] ticket = new byte[SessionCache.TICKET_SIZE];
        cache.writeTicket(e, ticket, (short) 0);
        SessionCache other = ClientHelloParserTest.cache(ram); // another key, another key id
        assertFalse(other.openTicket(ticket, (short) 0, SessionCache.TICKET_SIZE, out, (short) 0));
    }

    @Test
    void theOldestEntryIsReplacedAndGetsANewId() {
        byte[] first = new byte[SessionCache.ID_SIZE];
        short claim = sealedClaim();
        short e0 = SessionCache.entryOf(claim);
        cache.validate(claim);
        cache.writeId(e0, first, (short) 0);
        for (short k = 1; k < SessionCache.ENTRIES; k++) {
            assertEquals(k, SessionCache.entryOf(cache.claim()));
        }
        short again = cache.claim();
        assertEquals(e0, SessionCache.entryOf(again)); // round robin: the oldest again, invalid until sealed anew
        assertFalse(cache.openEntry(e0, out, (short) 0));
        // The first handshake outlived its claim: it can neither seal nor validate the entry.
        assertFalse(cache.holds(claim));
        cache.seal(claim, state, (short) 0);
        cache.validate(claim);
        assertFalse(cache.openEntry(e0, out, (short) 0));
        byte[] second = new byte[SessionCache.ID_SIZE];
        cache.writeId(e0, second, (short) 0);
        assertNotEquals(Arrays.toString(first), Arrays.toString(second));
    }
}
