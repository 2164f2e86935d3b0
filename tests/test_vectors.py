"""The vectors the applet's JUnit tests run (vectors/*.json) hold for an independent
implementation too: Python's hmac and pyca/cryptography. A typo in a vector fails here."""
from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def cases(name: str) -> list[dict[str, str]]:
    loaded: list[dict[str, str]] = json.loads((VECTORS / name).read_text())["cases"]
    return loaded


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_hmac_vectors_match_python_hmac() -> None:
    for case in cases("hmac_sha256_rfc4231.json"):
        mac = hmac.new(h(case["key"]), h(case["data"]), hashlib.sha256).digest()
        assert mac.startswith(h(case["mac"])), case["name"]


def test_prf_vector_matches_rfc5246_p_sha256() -> None:
    for case in cases("tls12_prf_sha256.json"):
        secret, seed = h(case["secret"]), h(case["label"]) + h(case["seed"])
        out, a = b"", seed
        while len(out) < len(h(case["output"])):
            a = hmac.new(secret, a, hashlib.sha256).digest()
            out += hmac.new(secret, a + seed, hashlib.sha256).digest()
        assert out[:len(h(case["output"]))] == h(case["output"]), case["name"]


def test_gcm_vectors_match_cryptography() -> None:
    for case in cases("aes_gcm_nist.json"):
        sealed = AESGCM(h(case["key"])).encrypt(h(case["iv"]), h(case["plaintext"]), h(case["aad"]) or None)
        assert sealed == h(case["ciphertext"]) + h(case["tag"]), case["name"]


def test_ccm_vectors_match_cryptography() -> None:
    for case in cases("aes_ccm.json"):
        tag = h(case["tag"])
        sealed = AESCCM(h(case["key"]), tag_length=len(tag)).encrypt(h(case["nonce"]), h(case["plaintext"]),
                                                                     h(case["aad"]) or None)
        assert sealed == h(case["ciphertext"]) + tag, case["name"]
