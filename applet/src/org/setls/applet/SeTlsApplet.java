package org.setls.applet;

import javacard.framework.APDU;
import javacard.framework.Applet;
import javacard.framework.ISO7816;
import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.security.CryptoException;
import javacard.security.RandomData;
import javacard.security.Signature;
import javacardx.apdu.ExtendedLength;
import javacardx.crypto.Cipher;

/**
 * SE-TLS: a TLS server that lives in the secure element. process() routes INS codes to the
 * handlers (docs/apdu.md) and maps exceptions to status words in one place: an ISOException
 * passes through, a CryptoException becomes Sw.CRYPTO_FAILURE, anything else Sw.INTERNAL_ERROR.
 * The card's memory is {@link Transients} (RAM) and {@link Persistent} (EEPROM).
 */
public final class SeTlsApplet extends Applet implements ExtendedLength, Constants {
    /** TAG_CAPABILITIES of the SELECT response. */
    private static final byte CAPABILITIES = CAP_EXTENDED_LENGTH | CAP_COMMAND_CHAINING | CAP_GET_RESPONSE
            | CAP_OPERATOR | CAP_STAGED_KEYS | CAP_PSK_STORE;

    private final Transients ram;
    private final OpCounters counters;
    private final ResponseStream out;
    private final CommandInput input;
    private final EapTls eap;
    private final Personalisation personalisation;
    private final RecordCommands records;
    private final OperatorSession operator;
    private final Persistent persistent;
    private final Sessions sessions;
    private final SessionCache cache;
    /** TAG_CAPABILITIES: CAPABILITIES and the signature hashes TlsServer found at install. */
    private final ClientAuth clientAuth;
    private final byte capabilities;

    /**
     * Every object the applet will ever use is allocated here, once, during install(): a card
     * may have no garbage collector, and nothing is allocated while processing APDUs.
     */
    private SeTlsApplet(byte installOptions) {
        ram = new Transients();
        sessions = new Sessions(ram);
        RandomData random = RandomData.getInstance(RandomData.ALG_SECURE_RANDOM);
        Cipher cbc = Cipher.getInstance(Cipher.ALG_AES_BLOCK_128_CBC_NOPAD, false);
        persistent = new Persistent(new PskStore(cbc, random, ram.bytes, Transients.OPERATOR_WORK));
        counters = new OpCounters(ram);
        out = new ResponseStream(ram);
        input = new CommandInput(ram);
        HmacSha256 hmac = new HmacSha256(ram);
        AesCcm ccm = new AesCcm(ram);
        RecordCipher cipher = new RecordCipher(new AesGcm(ram), ccm, hmac, random, counters, ram);
        cache = new SessionCache(ccm, random, counters, ram);
        TlsPrf prf = new TlsPrf(hmac, ram);
        prf.setCounters(counters);
        EcKeyGenerator keys = new EcKeyGenerator(random);
        TlsServer tls = new TlsServer(prf, cipher, random, keys, counters, persistent, sessions, ram, cache,
                new PskKeyExchange(persistent.psks, random, counters), hmac.digest(), installOptions);
        IdentityDirectory directory = new IdentityDirectory(persistent, new EchoHandler(), tls);
        eap = new EapTls(persistent.io, directory, sessions, counters, ram);
        // The handshake's ECDSA-SHA256 object also verifies the operator's signatures and signs
        // certification requests (an operator command never runs inside a handshake's APDU).
        Signature ecdsa = tls.ecdsaSha256();
        operator = new OperatorSession(persistent, hmac, random, keys, ecdsa, cbc, counters, ram);
        personalisation = new Personalisation(persistent, keys, counters, out, operator, input, ecdsa, sessions);
        records = new RecordCommands(tls, cipher, eap, sessions, input, ram);
        capabilities = (byte) (CAPABILITIES | tls.signatureCapabilities());
        clientAuth = tls.clientAuth();
    }

    /** The persistent state, for the in-process JUnit tests (package-private: no APDU reaches it). */
    Persistent persistent() {
        return persistent;
    }

    public static void install(byte[] bArray, short bOffset, byte bLength) {
        SeTlsApplet applet = new SeTlsApplet(installOptions(bArray, bOffset, bLength));
        // GlobalPlatform passes [Li AID][Lc privileges][La data]; jcardsim passes nothing (Quirks: INSTALL_PARAMETERS).
        if (bLength > 0 && bArray[bOffset] > 0) {
            applet.register(bArray, (short) (bOffset + 1), bArray[bOffset]);
        } else {
            applet.register();
        }
    }

    /**
     * The install options byte (Constants.INSTALL_*; docs/apdu.md "Install parameters"): the first
     * and only byte of the application's parameters, the third of GlobalPlatform's
     * [Li AID][Lc privileges][La parameters]. No parameters (an INSTALL without tag C9; jcardsim's
     * own install without them) is 00. Refused with WRONG_DATA, before anything is allocated:
     * parameters whose length is not 1 or runs past the data, an unknown bit.
     */
    static byte installOptions(byte[] data, short offset, byte length) {
        short end = (short) (offset + (short) (length & 0xFF));
        short at = offset;
        for (short field = 0; field < 2; field++) { // the AID, then the privileges
            if (at >= end) {
                return 0;
            }
            at = (short) (at + 1 + (short) (data[at] & 0xFF));
        }
        if (at >= end) {
            return 0;
        }
        short parameters = (short) (data[at] & 0xFF);
        at++;
        if (parameters == 0) {
            return 0;
        }
        if (parameters != 1 || at >= end) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        byte options = data[at];
        if ((options & (byte) ~(INSTALL_ECDSA_SHA384 | INSTALL_ECDSA_SHA512)) != 0) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        return options;
    }

    public boolean select() {
        sessions.resetAll();
        eap.abandonPacket();
        input.abandonUnless((byte) 0);
        records.abandonUnless((byte) 0);
        out.abandon();
        operator.end();
        return true;
    }

    public void process(APDU apdu) {
        if (selectingApplet()) {
            sendSelectResponse(apdu);
            return;
        }
        try {
            route(apdu);
        } catch (ISOException e) {
            abortOpenTransaction();
            throw e;
        } catch (CryptoException e) {
            failed();
            ISOException.throwIt(Sw.CRYPTO_FAILURE);
        } catch (RuntimeException e) {
            failed();
            ISOException.throwIt(Sw.INTERNAL_ERROR);
        }
    }

    /**
     * After an unexpected exception: no half-done update, no leftover secret, and the session the
     * command named, if it named one, ended; the other sessions go on.
     */
    private void failed() {
        abortOpenTransaction();
        eap.abandonPacket();
        out.abandon();
        records.abandonUnless((byte) 0);
        if (sessions.addressed()) {
            eap.endSession();
        }
        ram.clearScratch();
    }

    /**
     * A transaction an exception left open is aborted here (Quirks: TRANSACTIONS): a card's runtime
     * would abort it when process() returns, jcardsim would keep it open for the next command.
     */
    private static void abortOpenTransaction() {
        if (JCSystem.getTransactionDepth() != 0) {
            JCSystem.abortTransaction();
        }
    }

    private void route(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        counters.count(OpCounters.APDUS, (short) 1);
        sessions.beginCommand();
        byte ins = buf[ISO7816.OFFSET_INS];
        byte cla = (byte) (buf[ISO7816.OFFSET_CLA] & ~CLA_CHAINING);
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
        records.abandonUnless(ins); // a record's pieces come in a row
        if (ins != INS_PROCESS_EAP) {
            eap.abandonPacket(); // an EAP packet's chained APDUs come in a row
        }
        switch (ins) {
            case INS_PROCESS_EAP:
                eap.process(apdu, out);
                break;
            case INS_GET_RESPONSE:
                out.sendNext(apdu);
                break;
            case INS_UNPROTECT_RECORD:
                records.unprotect(apdu);
                break;
            case INS_PROTECT_RECORD:
                records.protect(apdu);
                break;
            case INS_EXPORT_KEYS:
                records.exportKeys(apdu);
                break;
            case INS_CLOSE_SESSION:
                records.close(apdu);
                break;
            case INS_VERIFY:
                personalisation.verify(apdu);
                break;
            case INS_GENERATE_KEY:
                personalisation.generateKey(apdu);
                break;
            case INS_PUT_DATA:
                personalisation.putData(apdu);
                break;
            case INS_GET_DATA:
                personalisation.getData(apdu);
                break;
            case INS_GET_COUNTERS:
                counters.send(apdu);
                break;
            case INS_INITIALIZE:
                personalisation.initialize(apdu);
                break;
            case INS_CHANGE_PIN:
                personalisation.changePin(apdu);
                break;
            case INS_UNBLOCK_PIN:
                personalisation.unblockPin(apdu);
                break;
            case INS_SIGN_CSR:
                personalisation.signCsr(apdu);
                break;
            case INS_WIPE:
                personalisation.wipe(apdu);
                break;
            case INS_OPERATOR_CHALLENGE:
                operator.challenge(apdu);
                break;
            case INS_OPERATOR_AUTHENTICATE:
                operator.authenticate(apdu);
                break;
            case INS_SET_TIME:
                clientAuth.setTime(apdu);
                break;
            default:
                ISOException.throwIt(Sw.INS_NOT_SUPPORTED);
        }
    }

    /** The commands that accept ISO 7816-4 command chaining. */
    private static boolean takesLongData(byte ins) {
        return ins == INS_PROCESS_EAP || ins == INS_SIGN_CSR;
    }

    /** SELECT: version, capabilities (the ECDSA hashes included), message capacity, default EAP packet size, identity, session and handshake slots. */
    private void sendSelectResponse(APDU apdu) {
        byte[] buf = apdu.getBuffer();
        short n = 0;
        n = Tlv.putPair(buf, n, TAG_VERSION, VERSION_MAJOR, VERSION_MINOR);
        n = Tlv.putByte(buf, n, TAG_CAPABILITIES, capabilities);
        n = Tlv.putShort(buf, n, TAG_MESSAGE_CAPACITY, Persistent.MESSAGE_CAPACITY);
        n = Tlv.putShort(buf, n, TAG_DEFAULT_PACKET, EapTls.DEFAULT_PACKET_SIZE);
        n = Tlv.putByte(buf, n, TAG_IDENTITY_SLOTS, MAX_IDENTITIES);
        n = Tlv.putByte(buf, n, TAG_SESSION_SLOTS, (byte) Sessions.SESSIONS);
        n = Tlv.putByte(buf, n, TAG_HANDSHAKE_SLOTS, (byte) Sessions.HANDSHAKES);
        n = Tlv.putByte(buf, n, TAG_CAPABILITIES_2, clientAuth.capabilities());
        buf[n++] = TAG_TICKET_KEY_ID;
        buf[n++] = (byte) SessionCache.KEY_ID_SIZE;
        n = cache.writeKeyId(buf, n);
        n = Tlv.putByte(buf, n, TAG_SESSION_CACHE, (byte) SessionCache.ENTRIES);
        apdu.setOutgoingAndSend((short) 0, n);
    }
}
