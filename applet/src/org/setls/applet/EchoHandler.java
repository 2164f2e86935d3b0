package org.setls.applet;

/**
 * Diagnostic identity: every message comes back as it went in. It proves the transport
 * (fragmentation both ways, GET RESPONSE, chaining, extended length) without any TLS.
 */
final class EchoHandler implements MessageHandler {
    public short onMessage(byte[] buf, short off, short len, short cap) {
        return len;
    }

    public boolean finished() {
        return false;
    }

    public boolean failed() {
        return false;
    }

    public void reset() {
    }

    public void end() {
    }
}
