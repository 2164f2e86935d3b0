package org.setls.applet;

/**
 * Where the platforms differ, in one place: jcardsim (the simulator every test runs on), NXP JCOP 3
 * (Java Card 3.0.4) and JCOP 4 (Java Card 3.0.5). Each entry names the difference, what the applet
 * does about it and where; the code that handles one says "Quirks: NAME". docs/quirks.md lists the
 * same entries for readers of the documentation.
 *
 * <ol>
 * <li><b>KEYGEN</b>: jcardsim's {@code KeyPair.genKeyPair()} draws from an unseeded SHA-1
 *     generator, so every simulated card made the same keys in the same order; and jcardsim's ECDH
 *     computes a wrong secret for a private scalar whose first byte is zero (about 1 handshake in
 *     256 failed). EcKeyGenerator draws the scalar from RandomData (the card's TRNG; on jcardsim
 *     seeded with {@code com.licel.jcardsim.randomdata.secure=1}), skips scalars with a leading
 *     zero byte, and computes W = S * G with ECDH {@code ALG_EC_SVDP_DH_PLAIN_XY}
 *     ({@link #KEYS_FROM_RANDOM_DATA}).</li>
 * <li><b>CURVE_PARAMETERS</b>: jcardsim preloads the domain parameters of EC keys; real cards
 *     build EC keys without them, and some forget them on {@code clearKey()}. P256.newKeyPair sets
 *     them on every key the applet builds and EcKeyGenerator sets them again before every
 *     generation: the applet never relies on preloaded parameters.</li>
 * <li><b>INVALID_POINT</b>: jcardsim's ECDH rejects a point off the curve with an exception of the
 *     host JVM (which, escaping process(), jcardsim answers 6F00); other cards throw a
 *     CryptoException or compute on another curve. PointCheck checks the curve equation first and
 *     TlsServer.agree turns any exception of the ECDH into the alert illegal_parameter, so every
 *     platform answers the same; the dispatcher maps anything that still escapes to 6F03.</li>
 * <li><b>NO_T0_GET_RESPONSE</b>: jcardsim does not split a long answer into 61xx and GET RESPONSE
 *     the way a T=0 card's runtime may, and T=0 readers drop response data that comes with an
 *     error status word. ResponseStream answers 61xx and serves GET RESPONSE itself, on every
 *     platform; a record the card rejects travels with 9000 and content type 0
 *     (RecordCommands.unprotect), not with an error status word.</li>
 * <li><b>LE_EXTENDED_ZERO</b>: an extended Le of 0000 means 65536, which a short cannot hold;
 *     jcardsim's {@code APDU.setOutgoing()} returns 0 for it. ResponseStream reads any Le of 0 or
 *     less as {@link #LE_EXTENDED_ZERO}.</li>
 * <li><b>ABSENT_LE</b>: a short command without Le (ISO case 1 or 3) reads as Le 0 on jcardsim,
 *     as an extended Le of 0000 does, and its {@code setOutgoingLength} refuses more than 258
 *     bytes on a short command (an exception, 6F03, and the conversation was lost). ResponseStream
 *     tells the two apart by the APDU buffer (jcardsim keeps short commands in a buffer of 260
 *     bytes, at most {@link #SHORT_APDU_BUFFER}), answers a short command at most
 *     {@link #SHORT_LE_MAX} bytes and 61xx for the rest, whatever its Le, and reads an absent Le
 *     as 00. A real card returns 32767 for an extended 0000 and at most 256 on a short command.</li>
 * <li><b>TRANSACTIONS</b>: jcardsim's transactions only count their depth: nothing rolls back, on
 *     abort or on a tear, and a transaction an exception left open stays open (the next
 *     {@code beginTransaction()} fails). Updates that span APDUs therefore never rely on rollback:
 *     they write the identity's shadow bank, which nothing reads, and commit by writing one byte
 *     field (Identity.banks), atomic on every platform (JCRE 7.7), jcardsim included. Identity
 *     checks every input before it writes, so a refused command changes nothing on any platform;
 *     SeTlsApplet.process aborts a transaction an exception left open, as a card's runtime does
 *     when process() returns. Tests on jcardsim show a reset between parts, not a rollback.</li>
 * <li><b>API_LEVEL</b>: jcardsim's {@code javacard.*} classes carry Java Card 3.1 members (for
 *     instance {@code Signature.verifyPreComputedHash}) that JCOP 3 (3.0.4) and JCOP 4 (3.0.5) do
 *     not have. The applet compiles against jcardsim's classes, so javac does not catch such a call
 *     (neither does scripts/jcsubset.py, which checks the language subset and the packages); the
 *     converter of {@code ant cap} with a 3.0.4 or 3.0.5 SDK does. The applet uses the 3.0.4 API,
 *     plus {@code ALG_EC_SVDP_DH_PLAIN_XY} (3.0.5) behind a fallback to {@code genKeyPair()}
 *     (EcKeyGenerator); it calls {@code RandomData.generateData}, deprecated since 3.0.5 but the
 *     only one 3.0.4 has.</li>
 * <li><b>MISSING_ALGORITHMS</b>: JCOP 3 and 4 have SHA-256, AES-ECB/CBC, ECDSA and ECDH, but no
 *     HMAC-SHA256 Signature and no AES-GCM or AES-CCM Cipher (jcardsim has more). HmacSha256,
 *     AesGcm and AesCcm build them on MessageDigest SHA-256 and Cipher AES-ECB; the applet never
 *     asks the platform for them.</li>
 * <li><b>ECDSA_HASHES</b>: jcardsim has ECDSA with SHA-384 and SHA-512; JCOP 3 and 4 may not (the
 *     Java Card 3.0.4 API names {@code ALG_ECDSA_SHA_384/512}, a card need not implement them).
 *     TlsServer asks for each once at install: {@code NO_SUCH_ALGORITHM} means the card signs only
 *     with SHA-256 and does not offer the others (SELECT capabilities {@code CAP_ECDSA_SHA384/512});
 *     a client that offers only hashes the card lacks gets handshake_failure.</li>
 * <li><b>ECDSA_PRECOMPUTED_HASH</b>: a client's CertificateVerify signs messages the card hashed
 *     and no longer holds; {@code Signature.verifyPreComputedHash} (Java Card 3.1) is absent on
 *     JCOP 3/4. ClientAuth probes ECDSA without a digest ({@code ALG_NULL, SIG_CIPHER_ECDSA,
 *     PAD_NULL}, 3.0.4 API; jcardsim has it, no public JCOP datasheet says) once at install and
 *     reports it in SELECT tag 88; without it the host sends the transcript copy (content type F0)
 *     and the card verifies with ALG_ECDSA_SHA_256 over it, its SHA-256 checked against the session
 *     hash.</li>
 * <li><b>INSTALL_PARAMETERS</b>: GlobalPlatform passes {@code [Li AID][Lc privileges][La data]} to
 *     install(), jcardsim's install command passes its data as it is, its installApplet(aid, class)
 *     nothing: SeTlsApplet.install registers with the AID when one is given, without otherwise, and
 *     reads the options byte (Constants.INSTALL_*) from the third LV when there is one.</li>
 * </ol>
 */
final class Quirks {
    private Quirks() {
    }

    /**
     * KEYGEN: draw private scalars from RandomData and compute the public point with ECDH
     * PLAIN_XY, rather than {@code genKeyPair()}. True for every platform: jcardsim needs it, real
     * cards lose nothing (a card without PLAIN_XY falls back to {@code genKeyPair()} anyway).
     */
    static final boolean KEYS_FROM_RANDOM_DATA = true;

    /** LE_EXTENDED_ZERO: the Le the response stream uses when the platform reports 0 or less. */
    static final short LE_EXTENDED_ZERO = 0x7FFF;

    /** ABSENT_LE: an APDU buffer of at most this many bytes holds a short command (ISO: 5 + 255 + 1). */
    static final short SHORT_APDU_BUFFER = 261;

    /** ABSENT_LE: the most a short command's answer carries (Le 00). */
    static final short SHORT_LE_MAX = 256;
}
