package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;

/**
 * The identities' commands (docs/apdu.md): VERIFY, GENERATE KEY, PUT DATA, GET DATA. P2 names the
 * identity slot. Each handler reads the APDU and asks the {@link Identity} to check and change
 * itself; it writes no field of an identity.
 */
final class Personalisation {
    private final Persistent persistent;
    private final EcKeyGenerator keys;
    private final OpCounters counters;
    private final ResponseStream out;

    /** Allocated once, at install. */
    Personalisation(Persistent persistent, EcKeyGenerator keys, OpCounters counters, ResponseStream out) {
        this.persistent = persistent;
        this.keys = keys;
        this.counters = counters;
        this.out = out;
    }

    private Identity slot(byte[] buf) {
        return persistent.slot(buf[ISO7816.OFFSET_P2]);
    }

    /** The slot's identity, if the PIN allows personalising it (6982 otherwise). */
    private Identity personalisable(byte[] buf) {
        Identity id = slot(buf);
        if (!id.mayPersonalise()) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        return id;
    }

    /** VERIFY: P1 = 00, data = the PIN; no data asks for the PIN's state. */
    void verify(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        if (buf[ISO7816.OFFSET_P1] != 0) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        Identity id = slot(buf);
        short len = apdu.setIncomingAndReceive();
        id.verifyPin(buf, apdu.getOffsetCdata(), len);
    }

    /** GENERATE KEY: a new P-256 key pair for the identity; answers the public point. */
    void generateKey(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = personalisable(buf);
        short len = id.generateKey(keys, buf, (short) 0);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        apdu.setOutgoingAndSend((short) 0, len);
    }

    /** PUT DATA: P1 = what (Constants.DATA_*), one short APDU of data. */
    void putData(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = personalisable(buf);
        short len = apdu.setIncomingAndReceive();
        short data = apdu.getOffsetCdata();
        if (len != apdu.getIncomingLength()) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // PUT DATA takes one short APDU at a time
        }
        switch (buf[ISO7816.OFFSET_P1]) {
            case Constants.DATA_NAME:
                id.setName(buf, data, len);
                break;
            case Constants.DATA_CHAIN_FIRST:
                id.replaceChain(buf, data, len);
                break;
            case Constants.DATA_CHAIN_NEXT:
                id.appendChain(buf, data, len);
                break;
            case Constants.DATA_PIN:
                id.setPin(buf, data, len);
                break;
            case Constants.DATA_POLICY:
                if (len != 1) {
                    ISOException.throwIt(Sw.WRONG_LENGTH);
                }
                id.setPolicy(buf[data]);
                break;
            case Constants.DATA_SUITES:
                id.setSuites(buf, data, len);
                break;
            default:
                ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        counters.count(OpCounters.EEPROM_BYTES, len);
    }

    /** GET DATA: P1 = what (Constants.DATA_*). */
    void getData(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = slot(buf);
        short n = 0;
        switch (buf[ISO7816.OFFSET_P1]) {
            case Constants.DATA_NAME:
                n = id.writeName(buf, (short) 0);
                break;
            case Constants.DATA_PUBLIC_KEY:
                n = id.writePublicKey(buf, (short) 0);
                break;
            case Constants.DATA_STATUS:
                n = id.writeStatus(buf, (short) 0);
                break;
            case Constants.DATA_CHAIN:
                id.sendChain(apdu, out);
                return;
            default:
                ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        apdu.setOutgoingAndSend((short) 0, n);
    }
}
