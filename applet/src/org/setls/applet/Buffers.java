package org.setls.applet;

/**
 * Every buffer of the applet, declared in one place with its size (the budget is in
 * docs/resources.md).
 */
final class Buffers {
    /** Largest TLS message (flight) the card takes or gives: a full 16 KB record plus expansion. */
    static final short MESSAGE_CAPACITY = 16384 + 2048;
    /**
     * The I/O buffer: EAP-TLS messages are reassembled here and answers written in place.
     * Persistent (EEPROM/flash) because no card has 18 KB of RAM; it holds no secret that
     * outlives a message, and it is written without transactions since it is scratch.
     */
    static final short IO_SIZE = EapTls.MSG_OFF + MESSAGE_CAPACITY;

    final byte[] io;

    /** Allocated once, at install. */
    Buffers() {
        io = new byte[IO_SIZE];
    }
}
