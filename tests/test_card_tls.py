"""The TLS server driven directly through the card's commands (no sockets): the same bytes in
both record modes, the PIN discipline, and the applet's operation counters."""
from __future__ import annotations

import pytest
from card_socket import CardSocket
from conftest import CardTarget
from tls12_client import RawTlsClient

from host.card.commands import SeTlsCard
from host.card.errors import AccessDeniedError
from host.provision import DEMO_PIN, initialise_demo
from host.tls.protection import HostRecordProtection

pytestmark = pytest.mark.timeout(300)
PIN = DEMO_PIN  # the same PIN as the servers of the other modules: one card may serve them all (--reader)


def handshake(card: SeTlsCard) -> RawTlsClient:
    card.session.select()
    card.unlock("server", PIN)
    card.begin_conversation("server")
    client = RawTlsClient("card", 0, sock=CardSocket(card))
    client.handshake()
    return client


def test_handshake_without_verified_pin_is_refused_with_security_status(card: SeTlsCard) -> None:
    card.session.select()  # a fresh card session: the PIN is verified until reset, so reset
    card.session.reset()
    with pytest.raises(AccessDeniedError) as refused:
        card.begin_conversation("server")
    assert "6982" in str(refused.value)


def test_card_and_host_record_layers_write_the_same_bytes(card: SeTlsCard) -> None:
    client = handshake(card)
    data = b"the same bytes, whoever protects them" * 20
    by_card = card.protect(23, data)
    keys = card.export_keys()
    keys.write_seq -= 1  # rewind to the sequence number the card just used
    by_host = HostRecordProtection(keys).protect(23, data)
    assert by_card == by_host
    assert client.unprotect(by_card[0], by_card[5:]) == data


def test_record_commands_are_refused_after_export(card: SeTlsCard) -> None:
    handshake(card)
    card.export_keys()
    from host.card.errors import CardRefusedError

    with pytest.raises(CardRefusedError) as refused:
        card.protect(23, b"no")
    assert refused.value.sw == 0x6985


def test_counters_match_a_hand_count_of_one_gcm_handshake(card: SeTlsCard) -> None:
    card.counters(reset=True)
    client = handshake(card)
    counts = card.counters()
    # One ephemeral key, one ServerKeyExchange signature, one ECDH, 32 random bytes (server_random)
    # and, the session being resumable (EMS), its 16-byte session ID and the sealing's 12-byte nonce.
    assert counts["ec_keygen"] == 1
    assert counts["ecdsa_sign"] == 1
    assert counts["ecdh"] == 1
    assert counts["random_bytes"] == 32 + 16 + 12
    # Two records (the client's and the server's Finished, 16 bytes each) in GCM: per record
    # H and the tag mask (2 AES blocks) + 1 block of data; 2 GHASH blocks + 1 of data. The
    # session's 117 bytes (its client's commonName included) sealed in AES-CCM: B0, AAD, S0, 8
    # CBC-MAC and 8 CTR blocks.
    assert counts["aes_blocks"] == 2 * 3 + 3 + 8 + 8
    assert counts["ghash_blocks"] == 2 * 3
    # SHA-256: the two transcript digests (each over the whole transcript once), plus the HMACs
    # of the PRF: master secret (48 B = 2 outputs), key block (40 B = 2), two Finished (12 B = 1
    # each): P_SHA256 makes 2 HMACs per output block: (2+2+1+1) * 2 = 12 HMACs.
    assert counts["hmac"] == 12
    transcript = len(client.transcript)
    finished = 16
    def blocks(n: int) -> int:
        return (n + 8) // 64 + 1
    session_part = transcript - finished
    expected_transcript = blocks(session_part) + blocks(transcript)
    assert counts["sha256_blocks"] >= expected_transcript + 12 * 4


def test_two_simulated_cards_generate_different_keys(applet_classes: object, card_target: CardTarget) -> None:
    """jcardsim's own key generation is unseeded: every card would make the same keys. The applet
    draws its scalars from RandomData, so they differ (docs: EcKeyGenerator)."""
    with card_target.cards(2) as cards:
        for card in cards:
            initialise_demo(card)  # key generation is the operator's
        points = {card.generate_key(0) for card in cards}
        points |= {cards[0].generate_key(1)}
    assert len(points) == 3


def test_ephemeral_keys_never_repeat(card: SeTlsCard) -> None:
    seen = set()
    for _ in range(5):
        client = handshake(card)
        ske = [m for m in _messages(client.transcript) if m[0] == 12][0]
        seen.add(ske[8:73])  # the ECPoint of the ServerKeyExchange
    assert len(seen) == 5


def _messages(transcript: bytes) -> list[bytes]:
    out, p = [], 0
    while p < len(transcript):
        n = 4 + int.from_bytes(transcript[p + 1:p + 4], "big")
        out.append(transcript[p:p + n])
        p += n
    return out
