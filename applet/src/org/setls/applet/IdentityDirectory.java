package org.setls.applet;

import javacard.framework.ISOException;
import javacard.framework.Util;

/** Finds what serves an EAP identity: a TLS identity of the card, or the diagnostic echo. */
final class IdentityDirectory {
    /** Identity name of the diagnostic echo. */
    private static final byte[] ECHO_IDENTITY = {'@', 'e', 'c', 'h', 'o'};

    private final Persistent persistent;
    private final EchoHandler echo;
    private final TlsServer tls;

    /** Allocated once, at install. */
    IdentityDirectory(Persistent persistent, EchoHandler echo, TlsServer tls) {
        this.persistent = persistent;
        this.echo = echo;
        this.tls = tls;
    }

    /**
     * The handler for the identity name, or null if the card has no such identity. A TLS identity
     * must be personalised (6985) and unlocked by its PIN (6982); the TLS server is then bound to it.
     */
    MessageHandler handlerFor(byte[] name, short off, short len) {
        if (len == (short) ECHO_IDENTITY.length
                && Util.arrayCompare(name, off, ECHO_IDENTITY, (short) 0, len) == 0) {
            return echo;
        }
        Identity id = persistent.find(name, off, len);
        if (id == null) {
            return null;
        }
        if (!id.isPersonalised()) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        if (!id.isUnlocked()) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        tls.bind(id);
        return tls;
    }
}
