package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.Applet;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.CryptoException;
import javacard.security.RandomData;
import javacardx.apdu.ExtendedLength;

/**
 * SE-TLS: a TLS server that lives in the secure element. process() only routes INS codes to
 * small handlers and maps exceptions to status words in one place (docs/apdu.md).
 */
public final class SeTlsApplet extends Applet implements ExtendedLength, IdentityDirectory {
    // Instruction bytes (docs/apdu.md).
    static final byte INS_VERIFY = 0x20;
    static final byte INS_GENERATE_KEY = 0x46;
    static final byte INS_PROCESS_EAP = (byte) 0x80;
    static final byte INS_UNPROTECT_RECORD = (byte) 0x84;
    static final byte INS_PROTECT_RECORD = (byte) 0x86;
    static final byte INS_EXPORT_KEYS = (byte) 0x88;
    static final byte INS_GET_RESPONSE = (byte) 0xC0;
    static final byte INS_GET_DATA = (byte) 0xCA;
    static final byte INS_PUT_DATA = (byte) 0xDA;
    static final byte INS_GET_COUNTERS = (byte) 0xE2;

    static final byte CLA_ISO = 0x00;
    static final byte CLA_OPEN_EAP = (byte) 0xA0;
    static final byte CLA_CHAINING = 0x10;

    static final byte VERSION_MAJOR = 1;
    static final byte VERSION_MINOR = 0;

    // SELECT response tags.
    static final byte TAG_VERSION = (byte) 0x80;
    static final byte TAG_CAPABILITIES = (byte) 0x81;
    static final byte TAG_MESSAGE_CAPACITY = (byte) 0x82;
    static final byte TAG_DEFAULT_PACKET = (byte) 0x83;
    static final byte TAG_IDENTITY_SLOTS = (byte) 0x84;
    static final byte CAP_EXTENDED_LENGTH = 0x01;
    static final byte CAP_COMMAND_CHAINING = 0x02;
    static final byte CAP_GET_RESPONSE = 0x04;

    // PUT DATA / GET DATA tags (P1).
    static final byte DATA_NAME = 0x01;
    static final byte DATA_CHAIN_FIRST = 0x02;
    static final byte DATA_CHAIN_NEXT = 0x03;
    static final byte DATA_PIN = 0x04;
    static final byte DATA_POLICY = 0x05;
    static final byte DATA_SUITES = 0x06;
    static final byte DATA_PUBLIC_KEY = 0x07;
    static final byte DATA_STATUS = 0x08;
    static final byte DATA_CHAIN = 0x09;

    static final byte MAX_IDENTITIES = 2;
    /** GET COUNTERS P1: reset the counters after reading them. */
    static final byte COUNTERS_RESET = 0x01;

    /** Identity name of the diagnostic echo ("@echo"). */
    static final byte[] ECHO_IDENTITY = {'@', 'e', 'c', 'h', 'o'};

    private final Buffers buffers;
    private final ResponseStream out;
    private final CommandInput input;
    private final OpCounters counters;
    private final EapTls eap;
    private final EchoHandler echo;
    private final TlsServer tls;
    private final Identity[] identities;
    private final EcKeyGenerator keys;

    /** Every object the applet will ever use is allocated here, once. */
    private SeTlsApplet() {
        buffers = new Buffers();
        out = new ResponseStream();
        input = new CommandInput();
        counters = new OpCounters();
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        HmacSha256 hmac = new HmacSha256();
        RecordCipher cipher = new RecordCipher(new AesGcm(), new AesCcm(), hmac, random, counters);
        TlsPrf prf = new TlsPrf(hmac);
        prf.setCounters(counters);
        keys = new EcKeyGenerator(random);
        tls = new TlsServer(prf, cipher, random, keys, counters);
        echo = new EchoHandler();
        eap = new EapTls(buffers.io, this);
        identities = new Identity[MAX_IDENTITIES];
        for (byte i = 0; i < MAX_IDENTITIES; i++) {
            identities[i] = new Identity();
        }
    }

    public static void install(byte[] bArray, short bOffset, byte bLength) {
        SeTlsApplet applet = new SeTlsApplet();
        // GlobalPlatform passes [Li AID][Lc privileges][La data]; jcardsim passes nothing.
        if (bLength > 0 && bArray[bOffset] > 0) {
            applet.register(bArray, (short) (bOffset + 1), bArray[bOffset]);
        } else {
            applet.register();
        }
    }

    public boolean select() {
        eap.reset();
        out.abandon();
        return true;
    }

    public void process(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        if (selectingApplet()) {
            sendSelectResponse(apdu);
            return;
        }
        counters.count(OpCounters.APDUS, (short) 1);
        byte cla = (byte) (buf[ISO7816.OFFSET_CLA] & ~CLA_CHAINING);
        byte ins = buf[ISO7816.OFFSET_INS];
        if (cla != CLA_ISO && cla != CLA_OPEN_EAP) {
            ISOException.throwIt(Sw.CLA_NOT_SUPPORTED);
        }
        if ((buf[ISO7816.OFFSET_CLA] & CLA_CHAINING) != 0 && !takesLongData(ins)) {
            ISOException.throwIt(Sw.FUNC_NOT_SUPPORTED);
        }
        if (ins != INS_GET_RESPONSE) {
            out.abandon();
            input.abandonUnless(ins);
        }
        try {
            dispatch(apdu, ins);
        } catch (ISOException e) {
            throw e;
        } catch (CryptoException e) {
            eap.reset();
            ISOException.throwIt(Sw.CRYPTO_FAILURE);
        } catch (RuntimeException e) {
            eap.reset();
            ISOException.throwIt(Sw.INTERNAL_ERROR);
        }
    }

    private static boolean takesLongData(byte ins) {
        return ins == INS_PROCESS_EAP || ins == INS_UNPROTECT_RECORD || ins == INS_PROTECT_RECORD;
    }

    private void dispatch(APDU apdu, byte ins) {
        switch (ins) {
            case INS_PROCESS_EAP:
                eap.process(apdu, out);
                break;
            case INS_GET_RESPONSE:
                out.sendNext(apdu);
                break;
            case INS_UNPROTECT_RECORD:
                unprotectRecord(apdu);
                break;
            case INS_PROTECT_RECORD:
                protectRecord(apdu);
                break;
            case INS_EXPORT_KEYS:
                exportKeys(apdu);
                break;
            case INS_VERIFY:
                verify(apdu);
                break;
            case INS_GENERATE_KEY:
                generateKey(apdu);
                break;
            case INS_PUT_DATA:
                putData(apdu);
                break;
            case INS_GET_DATA:
                getData(apdu);
                break;
            case INS_GET_COUNTERS:
                getCounters(apdu);
                break;
            default:
                ISOException.throwIt(Sw.INS_NOT_SUPPORTED);
        }
    }

    // ---- identities --------------------------------------------------------------------

    public MessageHandler handlerFor(byte[] name, short off, short len) {
        if (len == (short) ECHO_IDENTITY.length
                && Util.arrayCompare(name, off, ECHO_IDENTITY, (short) 0, len) == 0) {
            return echo;
        }
        for (byte i = 0; i < MAX_IDENTITIES; i++) {
            Identity id = identities[i];
            if (id.matches(name, off, len)) {
                if (!id.isPersonalised()) {
                    ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
                }
                if (!id.pinSet || !id.pin.isValidated()) {
                    ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
                }
                tls.bind(id);
                return tls;
            }
        }
        return null;
    }

    private Identity slot(byte[] buf) {
        byte p2 = buf[ISO7816.OFFSET_P2];
        if (p2 < 0 || p2 >= MAX_IDENTITIES) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        return identities[p2];
    }

    private Identity personalisable(byte[] buf) {
        Identity id = slot(buf);
        if (!id.mayPersonalise()) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        return id;
    }

    /** VERIFY: P2 = identity slot; no data asks for the PIN's state. */
    private void verify(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = slot(buf);
        short len = apdu.setIncomingAndReceive();
        if (!id.pinSet) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        if (id.pin.getTriesRemaining() == 0) {
            ISOException.throwIt(Sw.PIN_BLOCKED);
        }
        if (len == 0) {
            if (!id.pin.isValidated()) {
                ISOException.throwIt((short) (Sw.PIN_TRIES_LEFT_00 | id.pin.getTriesRemaining()));
            }
            return;
        }
        if (len > Identity.PIN_MAX || !id.pin.check(buf, apdu.getOffsetCdata(), (byte) len)) {
            byte left = id.pin.getTriesRemaining();
            ISOException.throwIt(left == 0 ? Sw.PIN_BLOCKED : (short) (Sw.PIN_TRIES_LEFT_00 | left));
        }
    }

    /** GENERATE KEY: a new P-256 key pair for the identity; answers the public point. */
    private void generateKey(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = personalisable(buf);
        id.generateKey(keys, buf, (short) 0);
        counters.count(OpCounters.EC_KEYGEN, (short) 1);
        short len = id.publicKey().getW(buf, (short) 0);
        apdu.setOutgoingAndSend((short) 0, len);
    }

    private void putData(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = personalisable(buf);
        short len = apdu.setIncomingAndReceive();
        short data = apdu.getOffsetCdata();
        if (len != apdu.getIncomingLength()) {
            ISOException.throwIt(Sw.WRONG_LENGTH); // PUT DATA takes one short APDU at a time
        }
        switch (buf[ISO7816.OFFSET_P1]) {
            case DATA_NAME:
                putName(id, buf, data, len);
                break;
            case DATA_CHAIN_FIRST:
                id.chainLength = 0;
                appendChain(id, buf, data, len);
                break;
            case DATA_CHAIN_NEXT:
                appendChain(id, buf, data, len);
                break;
            case DATA_PIN:
                if (len < Identity.PIN_MIN || len > Identity.PIN_MAX) {
                    ISOException.throwIt(Sw.WRONG_LENGTH);
                }
                JCSystem.beginTransaction();
                id.pin.update(buf, data, (byte) len);
                id.pinSet = true;
                JCSystem.commitTransaction();
                break;
            case DATA_POLICY:
                if (len != 1) {
                    ISOException.throwIt(Sw.WRONG_LENGTH);
                }
                id.policy = buf[data];
                break;
            case DATA_SUITES:
                putSuites(id, buf, data, len);
                break;
            default:
                ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
    }

    private void putName(Identity id, byte[] buf, short data, short len) {
        if (len == 0 || len > Identity.NAME_MAX || buf[data] == '@') {
            ISOException.throwIt(Sw.WRONG_DATA); // names starting with '@' are the card's own
        }
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, data, id.name, (short) 0, len);
        id.nameLength = (byte) len;
        JCSystem.commitTransaction();
    }

    private void appendChain(Identity id, byte[] buf, short data, short len) {
        if (!id.keyReady) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED); // a chain certifies a key
        }
        if (len > (short) (Identity.CHAIN_MAX - id.chainLength)) {
            ISOException.throwIt(Sw.FILE_FULL);
        }
        JCSystem.beginTransaction();
        Util.arrayCopy(buf, data, id.chain, id.chainLength, len);
        id.chainLength += len;
        JCSystem.commitTransaction();
    }

    private void putSuites(Identity id, byte[] buf, short data, short len) {
        if (len < 2 || len > (short) (2 * Identity.SUITES_MAX) || (len & 1) != 0) {
            ISOException.throwIt(Sw.WRONG_LENGTH);
        }
        for (short i = 0; i < len; i += 2) {
            short suite = Util.getShort(buf, (short) (data + i));
            if (suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    && suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM
                    && suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
                    && suite != Tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256) {
                ISOException.throwIt(Sw.WRONG_DATA);
            }
        }
        JCSystem.beginTransaction();
        for (short i = 0; i < len; i += 2) {
            id.suites[(short) (i >> 1)] = Util.getShort(buf, (short) (data + i));
        }
        id.suiteCount = (byte) (len >> 1);
        JCSystem.commitTransaction();
    }

    private void getData(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        Identity id = slot(buf);
        short n = 0;
        switch (buf[ISO7816.OFFSET_P1]) {
            case DATA_NAME:
                n = Util.arrayCopyNonAtomic(id.name, (short) 0, buf, (short) 0, id.nameLength);
                break;
            case DATA_PUBLIC_KEY:
                if (!id.keyReady) {
                    ISOException.throwIt(Sw.REFERENCED_DATA_NOT_FOUND);
                }
                n = id.publicKey().getW(buf, (short) 0);
                break;
            case DATA_STATUS:
                n = writeStatus(id, buf);
                break;
            case DATA_CHAIN:
                out.send(apdu, id.chain, (short) 0, id.chainLength);
                return;
            default:
                ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        apdu.setOutgoingAndSend((short) 0, n);
    }

    /** Status: key ready, chain length, PIN set, tries left, PIN verified, policy, suites. */
    private short writeStatus(Identity id, byte[] buf) {
        short n = 0;
        buf[n++] = (byte) (id.keyReady ? 1 : 0);
        n = Util.setShort(buf, n, id.chainLength);
        buf[n++] = (byte) (id.pinSet ? 1 : 0);
        buf[n++] = id.pin.getTriesRemaining();
        buf[n++] = (byte) (id.pin.isValidated() ? 1 : 0);
        buf[n++] = id.policy;
        buf[n++] = id.suiteCount;
        for (short i = 0; i < id.suiteCount; i++) {
            n = Util.setShort(buf, n, id.suites[i]);
        }
        return n;
    }

    // ---- the record layer in the card --------------------------------------------------

    private void requireEstablished() {
        if (eap.current() != tls || tls.phase() != TlsServer.PHASE_ESTABLISHED) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
    }

    /** UNPROTECT RECORD answer's first byte when the record was rejected. */
    static final byte REJECTED = 0x00;

    /** UNPROTECT RECORD: data = one TLS record; answer = content type + plaintext. */
    private void unprotectRecord(APDU apdu) {
        requireEstablished();
        byte[] io = buffers.io;
        short len = input.receive(apdu, io, EapTls.MSG_OFF, Buffers.MESSAGE_CAPACITY);
        if (len < 0) {
            return;
        }
        byte type = io[EapTls.MSG_OFF];
        short plain = tls.unprotectRecord(io, EapTls.MSG_OFF, len);
        if (plain < 0) {
            // Content type 0 (no TLS record has it) marks a rejection: the protected fatal alert
            // follows. Data cannot travel with an error status word (T=0 drops it).
            short n = tls.closeWithAlert(io, EapTls.MSG_OFF, Tls.ALERT_BAD_RECORD_MAC);
            io[(short) (EapTls.MSG_OFF - 1)] = REJECTED;
            out.send(apdu, io, (short) (EapTls.MSG_OFF - 1), (short) (n + 1));
            return;
        }
        short start = (short) (EapTls.MSG_OFF + tls.prefixLength() - 1);
        io[start] = type;
        out.send(apdu, io, start, (short) (plain + 1));
    }

    /** PROTECT RECORD: P1 = content type (alert or application data); answer = the record. */
    private void protectRecord(APDU apdu) {
        requireEstablished();
        byte type = apdu.getBuffer()[ISO7816.OFFSET_P1];
        if (type != Tls.CONTENT_APPLICATION_DATA && type != Tls.CONTENT_ALERT) {
            ISOException.throwIt(Sw.INCORRECT_P1P2);
        }
        byte[] io = buffers.io;
        short len = input.receive(apdu, io, (short) (EapTls.MSG_OFF + tls.prefixLength()), Tls.MAX_PLAINTEXT);
        if (len < 0) {
            return;
        }
        short n = tls.protectRecord(type, io, EapTls.MSG_OFF, len);
        out.send(apdu, io, EapTls.MSG_OFF, n);
    }

    /** EXPORT KEYS (tandem mode): only if the identity's policy allows it and its PIN was verified. */
    private void exportKeys(APDU apdu) {
        requireEstablished();
        Identity id = tls.boundIdentity();
        if ((id.policy & Identity.POLICY_EXPORT_KEYS) == 0) {
            ISOException.throwIt(Sw.CONDITIONS_NOT_SATISFIED);
        }
        if (!id.pin.isValidated()) {
            ISOException.throwIt(Sw.SECURITY_NOT_SATISFIED);
        }
        byte[] buf = apdu.getBuffer();
        short n = tls.exportKeys(buf, (short) 0);
        apdu.setOutgoingAndSend((short) 0, n);
    }

    private void getCounters(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        boolean reset = buf[ISO7816.OFFSET_P1] == COUNTERS_RESET;
        short n = counters.write(buf, (short) 0);
        if (reset) {
            counters.reset();
        }
        apdu.setOutgoingAndSend((short) 0, n);
    }

    private void sendSelectResponse(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short n = 0;
        buf[n++] = TAG_VERSION;
        buf[n++] = 2;
        buf[n++] = VERSION_MAJOR;
        buf[n++] = VERSION_MINOR;
        buf[n++] = TAG_CAPABILITIES;
        buf[n++] = 1;
        buf[n++] = CAP_EXTENDED_LENGTH | CAP_COMMAND_CHAINING | CAP_GET_RESPONSE;
        buf[n++] = TAG_MESSAGE_CAPACITY;
        buf[n++] = 2;
        n = Util.setShort(buf, n, Buffers.MESSAGE_CAPACITY);
        buf[n++] = TAG_DEFAULT_PACKET;
        buf[n++] = 2;
        n = Util.setShort(buf, n, EapTls.DEFAULT_PACKET_SIZE);
        buf[n++] = TAG_IDENTITY_SLOTS;
        buf[n++] = 1;
        buf[n++] = MAX_IDENTITIES;
        apdu.setOutgoingAndSend((short) 0, n);
    }
}
