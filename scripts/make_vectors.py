"""Writes vectors/*.txt from published test inputs (RFC 4231, the TLS 1.2 PRF vector, the GCM
spec's test cases, RFC 3610), with the expected outputs computed by `cryptography` / hmac so no
hand-copied hex slips in; the RFC outputs quoted in comments are asserted against them.

Format (read by the Java and the Python tests): blocks separated by a blank line, `name = hex`.
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

OUT = Path(__file__).resolve().parent.parent / "vectors"


def write(name: str, source: str, cases: list[dict[str, bytes]]) -> None:
    lines = [f"# {source}", ""]
    for case in cases:
        lines += [f"{k} = {v.hex()}" for k, v in case.items()] + [""]
    (OUT / name).write_text("\n".join(lines))


def prf(secret: bytes, label: bytes, seed: bytes, n: int) -> bytes:
    out, a = b"", label + seed
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + label + seed, hashlib.sha256).digest()
    return out[:n]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rfc4231 = [
        (b"\x0b" * 20, b"Hi There"),
        (b"Jefe", b"what do ya want for nothing?"),
        (b"\xaa" * 20, b"\xdd" * 50),
        (bytes(range(1, 26)), b"\xcd" * 50),
        (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
        (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data. "
                        b"The key needs to be hashed before being used by the HMAC algorithm."),
    ]
    cases = [{"key": k, "data": d, "mac": hmac.new(k, d, hashlib.sha256).digest()} for k, d in rfc4231]
    assert cases[0]["mac"].hex().startswith("b0344c61d8db38535ca8afceaf0bf12b")  # RFC 4231 4.2
    write("hmac_sha256.txt", "RFC 4231 test cases 1, 2, 3, 4, 6, 7 (HMAC-SHA-256)", cases)

    secret = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
    seed = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
    out = prf(secret, b"test label", seed, 100)
    assert out.hex().startswith("e3f229ba727be17b8d122620557cd453c2aab21d")  # published TLS 1.2 PRF vector
    write("tls12_prf_sha256.txt", "TLS 1.2 PRF (P_SHA256) vector published with the IETF TLS WG tests",
          [{"secret": secret, "label": b"test label", "seed": seed, "output": out}])

    k3 = bytes.fromhex("feffe9928665731c6d6a8f9467308308")
    iv3 = bytes.fromhex("cafebabefacedbaddecaf888")
    p3 = bytes.fromhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
    gcm = [(bytes(16), bytes(12), b"", b""), (bytes(16), bytes(12), bytes(16), b""), (k3, iv3, p3, b""),
           (k3, iv3, p3[:60], bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2"))]
    cases = []
    for key, iv, plain, aad in gcm:
        sealed = AESGCM(key).encrypt(iv, plain, aad)
        cases.append({"key": key, "iv": iv, "aad": aad, "plaintext": plain,
                      "ciphertext": sealed[:-16], "tag": sealed[-16:]})
    assert cases[0]["tag"].hex() == "58e2fccefa7e3061367f1d57a4e7455a"  # GCM spec test case 1
    assert cases[3]["tag"].hex() == "5bc94fbc3221a5db94fae95ae7121a47"  # GCM spec test case 4
    write("aes128_gcm.txt", "The GCM specification (McGrew, Viega), AES-128 test cases 1-4", cases)

    key = bytes(range(0xC0, 0xD0))
    ccm = [(bytes.fromhex("00000003020100a0a1a2a3a4a5"), bytes(range(8)), bytes(range(8, 31)), 8),   # RFC 3610 #1
           (bytes.fromhex("00000004030201a0a1a2a3a4a5"), bytes(range(8)), bytes(range(8, 32)), 8),   # RFC 3610 #2
           (bytes.fromhex("00000005040302a0a1a2a3a4a5"), bytes(range(8)), bytes(range(8, 33)), 8),   # RFC 3610 #3
           (bytes(range(12)), bytes(13), bytes(range(100)), 16),  # TLS CCM shape
           (bytes(range(12)), bytes(13), bytes(range(100)), 8)]   # TLS CCM_8 shape
    cases = []
    for nonce, aad, plain, tag in ccm:
        sealed = AESCCM(key, tag_length=tag).encrypt(nonce, plain, aad)
        cases.append({"key": key, "nonce": nonce, "aad": aad, "plaintext": plain,
                      "ciphertext": sealed[:-tag], "tag": sealed[-tag:]})
    assert (cases[0]["ciphertext"] + cases[0]["tag"]).hex().startswith("588c979a61c663d2f066d0c2c0f989806d5f6b61dac384")
    write("aes128_ccm.txt", "RFC 3610 packet vectors 1-3; 12-byte-nonce cases cross-checked with "
          "cryptography's AESCCM", cases)


if __name__ == "__main__":
    main()
