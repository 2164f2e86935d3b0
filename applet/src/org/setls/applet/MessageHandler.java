package org.setls.applet;

/**
 * What runs behind the EAP-TLS transport: the TLS server of an identity, or the diagnostic echo.
 * A handler gets each complete message (a TLS flight) the host sent and answers with the next one,
 * written in place: the input is fully parsed before the first output byte is written.
 */
interface MessageHandler {
    /**
     * Consumes {@code len} bytes at {@code buf[off]} and writes the answer from {@code buf[off]}.
     * @param cap room at {@code buf[off]} for the answer
     * @return the answer's length, possibly 0
     */
    short onMessage(byte[] buf, short off, short len, short cap);

    /** True once the conversation reached its end: the transport then closes with EAP-Success. */
    boolean finished();

    /** True if the conversation failed (an alert was sent): the transport closes with EAP-Failure. */
    boolean failed();

    /** Starts a new conversation for the active session; called when its EAP exchange starts. */
    void reset();

    /** Forgets the active session's conversation and frees what it holds; called when the session ends. */
    void end();
}
