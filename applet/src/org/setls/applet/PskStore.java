package org.setls.applet;

import javacard.framework.ISOException;
import javacard.framework.JCSystem;
import javacard.framework.Util;
import javacard.security.AESKey;
import javacard.security.KeyBuilder;
import javacard.security.RandomData;
import javacardx.crypto.Cipher;

/**
 * The card's pre-shared keys (TLS PSK suites use them later): up to COUNT entries, each a PSK
 * identity (1 to ID_MAX bytes, readable) and a key (KEY_MIN to KEY_MAX bytes) that no command
 * returns. A key is kept encrypted under a card key drawn at install (AES-128-CBC, a fresh random
 * IV per entry), as the block length (1) || key || zeros of BLOCK bytes; the operator sends it
 * encrypted under the session key (OperatorSession.decryptSecret) and the card re-encrypts it.
 *
 * An entry is in use when its identity length byte is not 0: storing writes the key and the
 * identity first and that byte last, deleting clears that byte first, each a single-byte write
 * (atomic on every Java Card platform), so a tear leaves an entry whole or absent.
 */
final class PskStore {
    static final byte COUNT = 8;
    static final short ID_MAX = 32;
    static final short KEY_MIN = 16;
    static final short KEY_MAX = 63;
    /** The encrypted block: length byte, key, zeros. */
    static final short BLOCK = 64;
    private static final short IV_SIZE = 16;
    private static final short ID_ENTRY = 1 + ID_MAX;
    private static final short KEY_ENTRY = IV_SIZE + BLOCK;
    static final short IDS_SIZE = COUNT * ID_ENTRY;
    static final short KEYS_SIZE = COUNT * KEY_ENTRY;

    private final byte[] ids;
    private final byte[] keys;
    private final AESKey cardKey;
    private final Cipher cbc;
    private final RandomData random;

    /** Allocated once, at install; the card key is drawn from RandomData through {@code scratch}. */
    PskStore(Cipher cbc, RandomData random, byte[] scratch, short off) {
        ids = new byte[IDS_SIZE];
        keys = new byte[KEYS_SIZE];
        this.cbc = cbc;
        this.random = random;
        cardKey = (AESKey) KeyBuilder.buildKey(KeyBuilder.TYPE_AES, KeyBuilder.LENGTH_AES_128, false);
        random.generateData(scratch, off, (short) 16);
        cardKey.setKey(scratch, off);
        Util.arrayFillNonAtomic(scratch, off, (short) 16, (byte) 0);
    }

    /** The entry with that identity, or -1. */
    private short find(byte[] buf, short off, short len) {
        for (short i = 0; i < COUNT; i++) {
            short e = (short) (i * ID_ENTRY);
            if (ids[e] != 0 && (short) (ids[e] & 0xFF) == len
                    && Util.arrayCompare(ids, (short) (e + 1), buf, off, len) == 0) {
                return i;
            }
        }
        return -1;
    }

    private short free() {
        for (short i = 0; i < COUNT; i++) {
            if (ids[(short) (i * ID_ENTRY)] == 0) {
                return i;
            }
        }
        return -1;
    }

    /**
     * Stores (or replaces) the PSK of that identity; {@code block} at plain[plainOff] is the
     * decrypted block (length byte, key, zeros). 6A80 for a bad identity or key length, 6A84 when
     * every entry is taken.
     */
    void store(byte[] id, short idOff, short idLen, byte[] plain, short plainOff) {
        short keyLen = (short) (plain[plainOff] & 0xFF);
        if (idLen < 1 || idLen > ID_MAX || keyLen < KEY_MIN || keyLen > KEY_MAX) {
            ISOException.throwIt(Sw.WRONG_DATA);
        }
        short old = find(id, idOff, idLen);
        short slot = free();
        if (slot < 0) {
            ISOException.throwIt(Sw.FILE_FULL);
        }
        short k = (short) (slot * KEY_ENTRY);
        random.generateData(keys, k, IV_SIZE);
        cbc.init(cardKey, Cipher.MODE_ENCRYPT, keys, k, IV_SIZE);
        cbc.doFinal(plain, plainOff, BLOCK, keys, (short) (k + IV_SIZE));
        short e = (short) (slot * ID_ENTRY);
        Util.arrayCopy(id, idOff, ids, (short) (e + 1), idLen);
        // The new entry appears, the old one goes: together on a card, each atomic anyway.
        JCSystem.beginTransaction();
        ids[e] = (byte) idLen;
        if (old >= 0) {
            ids[(short) (old * ID_ENTRY)] = 0;
        }
        JCSystem.commitTransaction();
        if (old >= 0) {
            Util.arrayFillNonAtomic(keys, (short) (old * KEY_ENTRY), KEY_ENTRY, (byte) 0);
        }
    }

    /** Deletes the PSK of that identity (6A88 if none). */
    void delete(byte[] id, short idOff, short idLen) {
        short i = find(id, idOff, idLen);
        if (i < 0) {
            ISOException.throwIt(Sw.REFERENCED_DATA_NOT_FOUND);
        }
        ids[(short) (i * ID_ENTRY)] = 0;
        Util.arrayFillNonAtomic(keys, (short) (i * KEY_ENTRY), KEY_ENTRY, (byte) 0);
        Util.arrayFillNonAtomic(ids, (short) (i * ID_ENTRY), ID_ENTRY, (byte) 0);
    }

    /**
     * The PSK of the identity at id[idOff] (idLen bytes) decrypted into out[outOff] (RAM, BLOCK
     * bytes: length byte, key, zeros); returns the key's length, or -1 (out untouched) if no entry
     * has that identity. The key is never written anywhere else.
     */
    short load(byte[] id, short idOff, short idLen, byte[] out, short outOff) {
        short i = find(id, idOff, idLen);
        if (i < 0) {
            return -1;
        }
        short k = (short) (i * KEY_ENTRY);
        cbc.init(cardKey, Cipher.MODE_DECRYPT, keys, k, IV_SIZE);
        cbc.doFinal(keys, (short) (k + IV_SIZE), BLOCK, out, outOff);
        short length = (short) (out[outOff] & 0xFF);
        return length >= KEY_MIN && length <= KEY_MAX ? length : -1;
    }

    /** Forgets every PSK. */
    void clear() {
        for (short i = 0; i < COUNT; i++) {
            ids[(short) (i * ID_ENTRY)] = 0;
        }
        Util.arrayFillNonAtomic(keys, (short) 0, KEYS_SIZE, (byte) 0);
        Util.arrayFillNonAtomic(ids, (short) 0, IDS_SIZE, (byte) 0);
    }

    /** GET DATA PSK identities: length || identity of each entry in use; returns the length. */
    short writeIdentities(byte[] buf, short off) {
        short n = off;
        for (short i = 0; i < COUNT; i++) {
            short e = (short) (i * ID_ENTRY);
            short len = (short) (ids[e] & 0xFF);
            if (len != 0) {
                buf[n++] = (byte) len;
                n = Util.arrayCopyNonAtomic(ids, (short) (e + 1), buf, n, len);
            }
        }
        return (short) (n - off);
    }

    short count() {
        short c = 0;
        for (short i = 0; i < COUNT; i++) {
            if (ids[(short) (i * ID_ENTRY)] != 0) {
                c++;
            }
        }
        return c;
    }
}
