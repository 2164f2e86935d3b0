package org.setls.applet;

/** Finds what serves an EAP identity: a TLS identity of the card, or the diagnostic echo. */
interface IdentityDirectory {
    /** Returns the handler for the identity name, or null if the card has no such identity. */
    MessageHandler handlerFor(byte[] name, short off, short len);
}
