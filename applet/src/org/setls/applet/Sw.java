package org.setls.applet;

/**
 * Status words the applet returns. ISO 7816-4 values where one fits; the applet's own
 * words live in the documented 0x6Fxx range (see docs/apdu.md) so that a host can tell
 * "the card refused" from "the card failed".
 */
public interface Sw {
    short OK = (short) 0x9000;
    /** 61xx: more response data, fetch it with GET RESPONSE (xx = bytes available, 00 = 256 or more). */
    short BYTES_REMAINING_00 = (short) 0x6100;

    short WRONG_LENGTH = (short) 0x6700;
    short SECURITY_NOT_SATISFIED = (short) 0x6982;
    short PIN_BLOCKED = (short) 0x6983;
    short CONDITIONS_NOT_SATISFIED = (short) 0x6985;
    short WRONG_DATA = (short) 0x6A80;
    short FUNC_NOT_SUPPORTED = (short) 0x6A81;
    short FILE_FULL = (short) 0x6A84;
    short REFERENCED_DATA_NOT_FOUND = (short) 0x6A88;
    short INCORRECT_P1P2 = (short) 0x6A86;
    short INS_NOT_SUPPORTED = (short) 0x6D00;
    short CLA_NOT_SUPPORTED = (short) 0x6E00;
    /** 63Cx: wrong PIN, x tries left. */
    short PIN_TRIES_LEFT_00 = (short) 0x63C0;

    // The applet's own range, 6F01..6F0F.
    /** EAP packet refused: wrong code, type or identifier for the current state. */
    short EAP_UNEXPECTED = (short) 0x6F01;
    /** A CryptoException surfaced from the platform; the reason code is not leaked. */
    short CRYPTO_FAILURE = (short) 0x6F02;
    /** An unexpected runtime exception (a bug): the session the command named, if any, was ended. */
    short INTERNAL_ERROR = (short) 0x6F03;
    /** An operator command without an open operator session (OPERATOR CHALLENGE + AUTHENTICATE). */
    short OPERATOR_REQUIRED = (short) 0x6F04;
    /** The card is in its transport state: INITIALIZE first. */
    short NOT_INITIALISED = (short) 0x6F05;
    /** INITIALIZE on a card that was initialised already. */
    short ALREADY_INITIALISED = (short) 0x6F06;
    /** Every handshake slot is lent to a handshake in progress: finish or close one first. */
    short NO_HANDSHAKE_SLOT = (short) 0x6F07;
}
