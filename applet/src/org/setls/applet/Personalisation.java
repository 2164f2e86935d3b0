package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.KeyPair;
import javacard.security.Signature;

/**
 * The card's lifecycle commands (docs/apdu.md): INITIALIZE; the user's VERIFY, CHANGE PIN and
 * UNBLOCK PIN (with the PUK); the operator's GENERATE KEY, SIGN CSR, PUT DATA and WIPE, each
 * authenticated by the operator session's MAC (OperatorSession.unwrap, checked before anything
 * else so that the MAC counter advances for every command the session accepted); GET DATA. P2
 * names the identity slot. Each handler reads the APDU and asks the {@link Identity},
 * {@link Persistent} or {@link PskStore} to check and change itself.
 *
 * The card signs with an identity's key only a CertificationRequestInfo it parsed itself whose
 * public key is that key (SIGN CSR): never a hash, never bytes a TLS peer could have chosen.
 */
final class Personalisation {
    private final Persistent persistent;
    private final EcKeyGenerator keys;
    private final OpCounters counters;
    private final ResponseStream out;
    private final OperatorSession operator;
    private final CommandInput input;
    private final Signature signer;
    private final Sessions sessions;

    /** Allocated once, at install. */
    Personalisation(Persistent persistent, EcKeyGenerator keys, OpCounters counters, ResponseStream out,
                    OperatorSession operator, CommandInput input, Signature signer, Sessions sessions) {
        this.sessions = sessions;
        this.persistent = persistent;
        this.keys = keys;
        this.counters = counters;
        this.out = out;
        this.operator = operator;
        this.input = input;
        this.signer = signer;
    }

    private Identity slot(byte[] buf) {
        return persistent.slot(buf[ISO7816.OFFSET_P2]);
    }

    /** The command's data, one APDU (6700 if it did not all arrive at once). */
    private static short receiveAll(APDU apdu) {
        short len = apdu.setIncomingAndReceive();
        if (len != apdu.getIncomingLength()) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        return len;
    }

    /** An operator command's payload length: its data with the MAC checked and removed. */
    private short operatorPayload(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short len = receiveAll(apdu);
        return operator.unwrap(buf, buf, apdu.getOffsetCdata(), len);
    }

    private void requireInitialised() {
        if (!persistent.isInitialised()) {
            ISOException.throwIt(Sw.NOT_INITIALISED);
        }
    }

    // ---- INITIALIZE and the user's commands ---------------------------------------------------

    /** INITIALIZE: data = PIN length, PIN, PUK length, PUK, operator point (65). Once (6F06). */
    void initialize(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        if (persistent.isInitialised()) {
            ISOException.throwIt(Sw.ALREADY_INITIALISED);
        }
        short len = receiveAll(apdu);
        short p = apdu.getOffsetCdata();
        short end = (short) (p + len);
        short pinLen = lengthAt(buf, p, end);
        short pukAt = (short) (p + 1 + pinLen);
        short pukLen = lengthAt(buf, pukAt, end);
        short point = (short) (pukAt + 1 + pukLen);
        if ((short) (end - point) != P256.POINT_SIZE || !P256.isPlausiblePoint(buf, point, P256.POINT_SIZE)) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        Identity.checkPinLength(pinLen);
        Identity.checkPinLength(pukLen);
        persistent.initialise(buf, (short) (p + 1), pinLen, (short) (pukAt + 1), pukLen, point);
    }

    /** The length byte at buf[at], checked to fit before {@code end} (6700). */
    /**
     * Data made of exactly two length-value fields (CHANGE PIN, UNBLOCK PIN): the offset of the
     * second one's length byte; 6700 for anything else.
     */
    private static short secondField(byte[] buf, short p, short end) {
        short second = (short) (p + 1 + lengthAt(buf, p, end));
        if ((short) (second + 1 + lengthAt(buf, second, end)) != end) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        return second;
    }

    private static short lengthAt(byte[] buf, short at, short end) {
        if (at >= end) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        short n = (short) (buf[at] & 0xFF);
        if (n > (short) (end - at - 1)) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        return n;
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

    /** CHANGE PIN: data = current PIN length, PIN, new PIN length, PIN. */
    void changePin(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = slot(buf);
        requireInitialised();
        short len = receiveAll(apdu);
        short p = apdu.getOffsetCdata();
        short end = (short) (p + len);
        short newAt = secondField(buf, p, end);
        id.changePin(buf, (short) (p + 1), lengthAt(buf, p, end), (short) (newAt + 1), lengthAt(buf, newAt, end));
    }

    /** UNBLOCK PIN: data = PUK length, PUK, new PIN length, PIN; a wrong PUK counts a PUK try. */
    void unblockPin(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = slot(buf);
        requireInitialised();
        short len = receiveAll(apdu);
        short p = apdu.getOffsetCdata();
        short end = (short) (p + len);
        short pukLen = lengthAt(buf, p, end);
        short newAt = secondField(buf, p, end);
        short newLen = lengthAt(buf, newAt, end);
        Identity.checkPinLength(newLen);
        Identity.checkPin(persistent.puk(), buf, (short) (p + 1), pukLen);
        id.setPin(buf, (short) (newAt + 1), newLen);
    }

    // ---- the operator's commands --------------------------------------------------------------

    /** GENERATE KEY (operator): P1 = KEY_SERVING (replace) or KEY_STAGED; answers the public point. */
    void generateKey(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short payload = operatorPayload(apdu);
        Identity id = slot(buf);
        byte which = buf[ISO7816.OFFSET_P1];
        if (which != Constants.KEY_SERVING && which != Constants.KEY_STAGED) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        if (payload != 0) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        short len = id.generateKey(keys, which == Constants.KEY_STAGED, buf, (short) 0);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        apdu.setOutgoingAndSend((short) 0, len);
    }

    /**
     * SIGN CSR (operator): data = a DER CertificationRequestInfo (RFC 2986) || MAC, chained or
     * extended; P1 = KEY_SERVING or KEY_STAGED. The card checks that it is a SEQUENCE of version 0,
     * a subject Name, a SubjectPublicKeyInfo byte for byte the key's own, the [0] attributes and
     * nothing after, and answers the ECDSA-SHA256 signature (DER) over it; anything else is 6A80.
     * A TLS ServerKeyExchange body or a TLS 1.3 CertificateVerify content is not such a structure.
     */
    void signCsr(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        byte[] io = persistent.io;
        sessions.releaseIo(); // the request overwrites a TLS session's message there, if any
        short len = input.receive(apdu, io, EapTls.MSG_OFF, Persistent.MESSAGE_CAPACITY);
        if (len < 0) {
            return; // a link of a chain
        }
        counters.count(OpCounters.EEPROM_BYTES, len);
        short cri = EapTls.MSG_OFF;
        short criLen = operator.unwrap(buf, io, cri, len);
        Identity id = slot(buf);
        byte which = buf[ISO7816.OFFSET_P1];
        if (which != Constants.KEY_SERVING && which != Constants.KEY_STAGED) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        KeyPair pair = id.keyPair(which == Constants.KEY_STAGED);
        checkCertificationRequestInfo(io, cri, criLen, pair);
        signer.init(pair.getPrivate(), Signature.MODE_SIGN);
        short n = signer.sign(io, cri, criLen, buf, (short) 0);
        counters.count(OpCounters.ECDSA_SIGN, (short) 1);
        apdu.setOutgoingAndSend((short) 0, n);
    }

    private void checkCertificationRequestInfo(byte[] c, short off, short len, KeyPair pair) {
        short end = (short) (off + len);
        if (len < 2 || Der.skip(c, off, end, Der.SEQUENCE) != end) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        short p = Der.body(c, off, end, Der.SEQUENCE);
        if ((short) (end - p) < 3 || c[p] != Der.INTEGER || c[(short) (p + 1)] != 1 || c[(short) (p + 2)] != 0) {
            ISOException.throwIt(Sw.WRONG_DATA); // version: INTEGER 0
        }
        p = Der.skip(c, (short) (p + 3), end, Der.SEQUENCE);         // subject
        short spkiEnd = Der.skip(c, p, end, Der.SEQUENCE);           // subjectPKInfo
        if ((short) (spkiEnd - p) != P256.SPKI_SIZE
                || !Identity.isSpkiOf(c, p, pair, operator.work(), OperatorSession.WORK)) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        if (Der.skip(c, spkiEnd, end, Der.CONTEXT_0) != end) {         // attributes, then nothing
            ISOException.throwIt(Sw.WRONG_DATA);
        }
    }

    /** WIPE (operator): the identity forgets its keys, chains, CAs, name and policy. */
    void wipe(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short payload = operatorPayload(apdu);
        Identity id = slot(buf);
        if (payload != 0) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        operator.endUpload();
        id.wipe();
    }

    /** PUT DATA (operator): P1 = what (Constants.DATA_*), one APDU of data, MAC last. */
    void putData(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short len = operatorPayload(apdu);
        short data = apdu.getOffsetCdata();
        byte tag = buf[ISO7816.OFFSET_P1];
        byte p2 = buf[ISO7816.OFFSET_P2];
        switch (tag) {
            case Constants.DATA_PSK:
                setPsk(buf, data, len);
                counters.count(OpCounters.EEPROM_BYTES, len);
                return;
            case Constants.DATA_PSK_DELETE:
                persistent.psks.delete(buf, data, len);
                counters.count(OpCounters.EEPROM_BYTES, len);
                return;
            case Constants.DATA_PUK:
                setSecretPuk(buf, data, len);
                counters.count(OpCounters.EEPROM_BYTES, len);
                return;
            case Constants.DATA_REVOKED:
                persistent.clientCerts.setRevoked(buf, data, len);
                counters.count(OpCounters.EEPROM_BYTES, len);
                return;
            default:
                break;
        }
        Identity id = persistent.slot(p2);
        switch (tag) {
            case Constants.DATA_NAME:
                id.setName(buf, data, len);
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
            case Constants.DATA_SNI:
                id.setSni(buf, data, len);
                break;
            case Constants.DATA_PIN:
                setSecretPin(id, buf, data, len);
                break;
            case Constants.DATA_CHAIN_FIRST:
            case Constants.DATA_CA_FIRST:
                byte what = tag == Constants.DATA_CHAIN_FIRST ? Constants.COMMIT_CHAIN : Constants.COMMIT_CAS;
                operator.beginUpload(what, p2, id.upload(what, (short) 0, buf, data, len));
                break;
            case Constants.DATA_CHAIN_NEXT:
            case Constants.DATA_CA_NEXT:
                byte next = tag == Constants.DATA_CHAIN_NEXT ? Constants.COMMIT_CHAIN : Constants.COMMIT_CAS;
                short at = operator.uploaded(next, p2);
                if (at < 0) {
                    ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED); // no FIRST part in this session
                }
                operator.beginUpload(next, p2, id.upload(next, at, buf, data, len));
                break;
            case Constants.DATA_COMMIT:
                commit(id, p2, buf, data, len);
                break;
            default:
                ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        counters.count(OpCounters.EEPROM_BYTES, len);
    }

    /** COMMIT: data = what (COMMIT_CHAIN or COMMIT_CAS) || total length (2), as uploaded in this session. */
    private void commit(Identity id, byte p2, byte[] buf, short data, short len) {
        if (len != 3) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        byte what = buf[data];
        short total = Util.getShort(buf, (short) (data + 1));
        if (what != Constants.COMMIT_CHAIN && what != Constants.COMMIT_CAS) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        if (operator.uploaded(what, p2) != total) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED); // not what this session uploaded
        }
        operator.endUpload();
        if (what == Constants.COMMIT_CHAIN) {
            id.commitChain(total, operator.work(), OperatorSession.WORK);
        } else {
            id.commitCas(total);
        }
    }

    /** PIN reset by the operator: data = IV || encrypted PIN block; the tries start again. */
    private void setSecretPin(Identity id, byte[] buf, short data, short len) {
        short n = operator.decryptSecret(buf, data, len, OperatorSession.PIN_BLOCK);
        try {
            id.setPin(operator.work(), (short) (OperatorSession.WORK + 1), n);
        } finally {
            operator.wipeWork();
        }
    }

    /** PUK by the operator: data = IV || encrypted PUK block. */
    private void setSecretPuk(byte[] buf, short data, short len) {
        short n = operator.decryptSecret(buf, data, len, OperatorSession.PIN_BLOCK);
        try {
            persistent.setPuk(operator.work(), (short) (OperatorSession.WORK + 1), n);
        } finally {
            operator.wipeWork();
        }
    }

    /** PSK: data = identity length, identity, IV, encrypted key block (PskStore.BLOCK bytes). */
    private void setPsk(byte[] buf, short data, short len) {
        short end = (short) (data + len);
        short idLen = lengthAt(buf, data, end);
        short secret = (short) (data + 1 + idLen);
        operator.decryptSecret(buf, secret, (short) (end - secret), PskStore.BLOCK);
        try {
            persistent.psks.store(buf, (short) (data + 1), idLen, operator.work(), OperatorSession.WORK);
        } finally {
            operator.wipeWork();
        }
    }

    // ---- reading ------------------------------------------------------------------------------

    /** GET DATA: P1 = what (Constants.DATA_*); P2 = the identity slot (00 for the card's own items). */
    void getData(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        byte tag = buf[ISO7816.OFFSET_P1];
        short n = 0;
        switch (tag) {
            case Constants.DATA_CARD_STATUS:
                n = writeCardStatus(buf);
                apdu.setOutgoingAndSend((short) 0, n);
                return;
            case Constants.DATA_PSK_IDS:
                // Up to 264 bytes: from the I/O buffer, which outlives the APDU for GET RESPONSE
                // (a TLS session's message there, if any, is overwritten: Sessions.releaseIo).
                sessions.releaseIo();
                n = persistent.psks.writeIdentities(persistent.io, EapTls.MSG_OFF);
                counters.count(OpCounters.EEPROM_BYTES, n);
                out.send(apdu, persistent.io, EapTls.MSG_OFF, n);
                return;
            case Constants.DATA_REVOKED:
                n = persistent.clientCerts.writeRevoked(buf, (short) 0);
                apdu.setOutgoingAndSend((short) 0, n);
                return;
            case Constants.DATA_CLIENT_SUBJECT:
                n = persistent.clientCerts.writeSubject(buf[ISO7816.OFFSET_P2], buf, (short) 0);
                apdu.setOutgoingAndSend((short) 0, n);
                return;
            case Constants.DATA_OPERATOR_KEY:
                if (!persistent.isInitialised()) {
                    ISOException.throwIt(Sw.NOT_INITIALISED);
                }
                n = persistent.operatorKey().getW(buf, (short) 0);
                apdu.setOutgoingAndSend((short) 0, n);
                return;
            default:
                break;
        }
        Identity id = slot(buf);
        switch (tag) {
            case Constants.DATA_NAME:
                n = id.writeName(buf, (short) 0);
                break;
            case Constants.DATA_PUBLIC_KEY:
                n = id.writePublicKey(buf, (short) 0, false);
                break;
            case Constants.DATA_STAGED_PUBLIC_KEY:
                n = id.writePublicKey(buf, (short) 0, true);
                break;
            case Constants.DATA_STATUS:
                n = id.writeStatus(buf, (short) 0);
                break;
            case Constants.DATA_SNI:
                n = id.writeSni(buf, (short) 0);
                break;
            case Constants.DATA_CHAIN:
                id.sendChain(apdu, out);
                return;
            case Constants.DATA_CAS:
                id.sendCas(apdu, out);
                return;
            default:
                ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        apdu.setOutgoingAndSend((short) 0, n);
    }

    /**
     * Card status: initialised, PUK tries left, operator session open, PSKs stored, PSK capacity,
     * free persistent memory (2, saturated at 7FFF), free CLEAR_ON_DESELECT RAM (2).
     */
    private short writeCardStatus(byte[] buf) {
        short n = 0;
        buf[n++] = (byte) (persistent.isInitialised() ? 1 : 0);
        buf[n++] = persistent.puk().getTriesRemaining();
        buf[n++] = (byte) (operator.isOpen() ? 1 : 0);
        buf[n++] = (byte) persistent.psks.count();
        buf[n++] = PskStore.COUNT;
        n = Util.setShort(buf, n, JCSystem.getAvailableMemory(JCSystem.MEMORY_TYPE_PERSISTENT));
        n = Util.setShort(buf, n, JCSystem.getAvailableMemory(JCSystem.MEMORY_TYPE_TRANSIENT_DESELECT));
        return n;
    }
}
