package org.setls.applet;

import javacard.framework.CardRuntimeException;

/**
 * Thrown inside the handshake to abort it with a fatal alert; the reason is the AlertDescription.
 * One instance, allocated at install (a card may have no garbage collector).
 */
final class TlsAlert extends CardRuntimeException {
    TlsAlert() {
        super((short) 0);
    }

    void raise(byte description) {
        setReason(description);
        throw this;
    }
}
