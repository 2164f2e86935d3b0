"""The benchmark: the cost model's formula on made-up cards, the card's operation counters against
a hand count of one handshake driven by Python's ssl, and `python -m host.bench --quick` end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from host.bench.client import (
    HandshakeTrace,
    MemoryTlsClient,
    client_context,
    drive_handshake,
)
from host.bench.client_auth import client_auth_benchmark
from host.bench.results import Settings
from host.bench.runs import personalise_identity
from host.card import cost_model
from host.card.commands import SeTlsCard, open_cards
from host.card.cost_model import CardRow, Link, MissingCost, Workload
from host.card.numbers import Policy
from host.demo_pki import DemoCa
from host.tls.numbers import CipherSuite

COLUMNS = ("ecdsa_p256_sign_ms,ecdsa_p256_verify_ms,ecdh_p256_ms,ec_p256_keygen_ms,rsa2048_crt_decrypt_ms,"
           "sha256_64B_ms,sha256_256B_ms,sha256_per_extra_block_ms,aes128_cbc_16B_ms,aes128_cbc_256B_ms,"
           "aes128_cbc_512B_ms,apdu_baseline_ms")
# Made-up cards. Complete: SHA-256 is 17 ms per call + 13 ms per block (64 B = 2 blocks: 43 ms,
# 256 B = 5 blocks: 82 ms); AES is 23 ms per call + 0.5 ms per block (16 B: 23.5, 256 B: 31, 512 B: 39).
# Gappy: no SHA-256 slope, no 64 B cell, no AES 16 B or 512 B cell, no APDU baseline.
MADE_UP = f"""# a comment line, as in the real file
card,{COLUMNS}
Complete,2,3,5,7,999,43,82,13,23.5,31,39,29
Gappy,2,3,5,7,999,,100,,,40,,
"""


# ---- the cost model ---------------------------------------------------------------------------


def made_up_rows() -> list[CardRow]:
    return cost_model.parse_costs(MADE_UP)


def test_the_table_parses_with_comments_and_empty_cells() -> None:
    complete, gappy = made_up_rows()
    assert complete.card == "Complete" and complete.get("ecdh_p256_ms") == 5
    assert gappy.get("sha256_64B_ms") is None and gappy.get("apdu_baseline_ms") is None


def test_unit_costs_are_the_straight_lines_through_the_cells() -> None:
    complete = cost_model.unit_costs(made_up_rows()[0])
    assert complete.asymmetric_ms == {"ecdsa_sign": 2, "ecdsa_verify": 3, "ecdh": 5, "ec_keygen": 7}
    assert (complete.sha_call_ms, complete.sha_block_ms) == pytest.approx((17, 13))
    assert (complete.aes_call_ms, complete.aes_block_ms) == pytest.approx((23, 0.5))
    assert complete.apdu_ms == 29
    assert complete.notes == ()


def test_the_formula_on_a_made_up_card_exactly() -> None:
    costs = cost_model.unit_costs(made_up_rows()[0])
    counts = {"ecdsa_sign": 1, "ecdsa_verify": 0, "ecdh": 1, "ec_keygen": 1, "sha256_blocks": 85,
              "aes_blocks": 6, "ghash_blocks": 6, "random_bytes": 32, "hmac": 12, "apdus": 4}
    work = Workload(counts, digests=26, aes_calls=6, apdus=3, bytes=1152)
    result = cost_model.model(work, costs, Link(bit_rate=80000, bits_per_byte=8), ghash_block_ms=100)
    assert result.asymmetric == pytest.approx(2 + 5 + 7)
    assert result.sha256 == pytest.approx(26 * 17 + 85 * 13)
    assert result.aes == pytest.approx(6 * 23 + 6 * 0.5)
    assert result.apdu == pytest.approx(3 * 29)
    assert result.transfer == pytest.approx(1152 * 0.1)
    assert result.total == pytest.approx(14 + 1547 + 141 + 87 + 115.2)
    assert result.ghash_blocks == 6 and result.ghash_assumed == pytest.approx(600)
    assert result.total_with_ghash == pytest.approx(1904.2 + 600)


def test_missing_cells_are_fitted_or_borrowed_and_said() -> None:
    complete, gappy = made_up_rows()
    costs = cost_model.unit_costs(gappy, [complete, gappy])
    # SHA-256: the slope comes from Complete (13), the call cost from Gappy's 256 B cell: 100 - 5 * 13.
    assert (costs.sha_call_ms, costs.sha_block_ms) == pytest.approx((35, 13))
    # AES: the slope from Complete's 256/512 B cells (0.5), the call from Gappy's 256 B: 40 - 16 * 0.5.
    assert (costs.aes_call_ms, costs.aes_block_ms) == pytest.approx((32, 0.5))
    assert costs.apdu_ms == 29
    assert any("Complete" in note and "apdu_baseline_ms" in note for note in costs.notes)
    counts = {"sha256_blocks": 10, "aes_blocks": 4}
    result = cost_model.model(Workload(counts, digests=2, aes_calls=1, apdus=1, bytes=0), costs)
    assert result.total == pytest.approx(2 * 35 + 10 * 13 + 32 + 4 * 0.5 + 29)


def test_a_cell_no_row_has_is_a_missing_cost() -> None:
    _, gappy = made_up_rows()
    with pytest.raises(MissingCost, match="sha256"):
        cost_model.unit_costs(gappy, [gappy])


def test_the_real_table_gives_every_card_row_a_cost() -> None:
    rows = cost_model.load_costs(ROOT / "bench" / "card-op-costs.csv")
    costs = {c.card: c for c in (cost_model.unit_costs(row, rows) for row in rows)}
    assert len(costs) == 5
    j3r180 = costs["NXP JCOP4 J3R180 (P71)"]
    assert j3r180.notes == ()
    assert j3r180.sha_call_ms == pytest.approx(3.64 - 2 * 1.43)
    assert any("J3R180" in note for note in costs["NXP JCOP4 P71D321"].notes)


def test_sha_and_prf_helpers_follow_the_applets_counting() -> None:
    assert [cost_model.sha256_blocks(n) for n in (0, 55, 56, 64, 119, 120)] == [1, 1, 2, 2, 2, 3]
    assert cost_model.hmac_sha256_blocks(54) == 2 + 2
    assert cost_model.prf_hmac_messages(54, 48) == [54, 86, 32, 86]
    assert cost_model.prf_hmac_messages(47, 12) == [47, 79]


# ---- the card's counters against a hand count --------------------------------------------------


def blocks(n: int) -> int:
    """SHA-256 compression blocks of n bytes: 0x80 and an 8-byte length, padded to 64 bytes."""
    return (n + 1 + 8 + 63) // 64


# The PRF's HMACs (TlsPrf.count: inner hash over 64 + message bytes, outer over 64 + 32 = 2 blocks).
# P_SHA256 hashes A(1) = HMAC(seed), then per 32-byte output HMAC(A(i) + seed), and A(i+1) between.
PRF_BLOCKS = (
    # extended master secret: seed = "extended master secret" (22) + session hash (32) = 54, 48 B out:
    # messages 54, 86, 32, 86 -> inner 2, 3, 2, 3 blocks, + 4 x 2 outer
    (2 + 3 + 2 + 3) + 4 * 2
    # key expansion: seed = "key expansion" (13) + 2 randoms (64) = 77, 40 B out (GCM):
    # messages 77, 109, 32, 109 -> inner 3, 3, 2, 3, + 4 x 2 outer
    + (3 + 3 + 2 + 3) + 4 * 2
    # client and server Finished: seed = "client/server finished" (15) + hash (32) = 47, 12 B out:
    # messages 47, 79 -> inner 2, 3, + 2 x 2 outer; twice
    + 2 * ((2 + 3) + 2 * 2)
)


@pytest.fixture(scope="module")
def gcm_card(applet_classes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeTlsCard, str]]:
    with open_cards(sim=1) as cards:
        card = cards[0]
        directory = tmp_path_factory.mktemp("ca")
        ca = DemoCa.load_or_create(directory)
        cafile = str(directory / "ca.pem")
        personalise_identity(card, ca)
        card.put_suites(card.slot or 0, (CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,))
        yield card, cafile


def counted_handshake(card: SeTlsCard, cafile: str) -> tuple[MemoryTlsClient, HandshakeTrace, dict[str, int]]:
    """A GCM handshake by Python ssl with the counters reset before and read after (no retry: a
    failed handshake fails the test)."""
    client = MemoryTlsClient(client_context(cafile, CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
    card.counters(reset=True)
    card.session.stats.reset()
    trace = drive_handshake(card, client, card.session.stats, "server")
    return client, trace, card.counters()


@pytest.mark.simulator
@pytest.mark.timeout(300)
def test_counters_of_a_gcm_handshake_by_python_ssl_match_a_hand_count(gcm_card: tuple[SeTlsCard, str]) -> None:
    card, cafile = gcm_card
    client, trace, counts = counted_handshake(card, cafile)
    stats = card.session.stats
    assert trace.suite == CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 and client.tls.version() == "TLSv1.2"
    assert counts["ec_keygen"] == 1 and counts["ecdsa_sign"] == 1 and counts["ecdh"] == 1
    assert counts["ecdsa_verify"] == 0
    # server_random; the session is resumable (Python's client offers EMS and session_ticket): its
    # 16-byte session ID and the 12-byte nonce it is sealed with (issue 12).
    assert counts["random_bytes"] == 32 + 16 + 12
    # PRF: master secret 2 output blocks, key block 2, two Finished 1 each; 2 HMACs per block.
    assert counts["hmac"] == (2 + 2 + 1 + 1) * 2
    # Two 16-byte Finished records in GCM: per record H, E(K, J0) and 1 data block; GHASH of the
    # AAD block, the lengths block and 1 data block. Sealing the session's 117 bytes in AES-CCM
    # (its client's commonName included): B0, the AAD block and S0, then 8 blocks of CBC-MAC and 8 of CTR.
    assert counts["aes_blocks"] == 2 * (2 + 1) + 3 + 8 + 8
    assert counts["ghash_blocks"] == 2 * (2 + 1)
    # SHA-256: the session hash (through ClientKeyExchange) and the transcript (through the
    # client's 16-byte Finished and the 163-byte NewSessionTicket the server's Finished covers),
    # each over the handshake messages once, plus the PRF.
    assert PRF_BLOCKS == 55
    session = trace.client_hello + trace.server_flight + trace.client_key_exchange
    assert counts["sha256_blocks"] == blocks(session) + blocks(session + 16 + 163) + PRF_BLOCKS
    assert counts["apdus"] == 3 + 1                    # identity, 2 flights, and the GET COUNTERS
    assert stats.phases["flight1"].apdus + stats.phases["flight3"].apdus == 3


@pytest.mark.simulator
@pytest.mark.timeout(300)
def test_one_kilobyte_each_way_through_the_card_counts_its_blocks(gcm_card: tuple[SeTlsCard, str]) -> None:
    card, cafile = gcm_card
    client, _, _ = counted_handshake(card, cafile)
    data = bytes(range(256)) * 4
    card.counters(reset=True)
    content_type, plain = card.unprotect(client.protect(data))
    echoed = client.unprotect(card.protect(23, plain), len(data))
    counts = card.counters()
    assert (content_type, plain, echoed) == (23, data, data)
    assert counts["aes_blocks"] == 2 * (2 + 64) and counts["ghash_blocks"] == 2 * (2 + 64)
    assert counts["sha256_blocks"] == 0 and counts["hmac"] == 0


@pytest.mark.simulator
@pytest.mark.timeout(300)
def test_client_auth_handshakes_count_a_verify_per_signature_and_the_copy_is_what_the_copy_path_adds(
        gcm_card: tuple[SeTlsCard, str], tmp_path: Path) -> None:
    """Both verify paths: each certificate of the client's chain and its CertificateVerify are one
    ECDSA verify each; the transcript copy is ClientHello .. ClientKeyExchange with its record headers, and
    it is what the copy path sends the card beyond the ALG_NULL path."""
    card, cafile = gcm_card
    ca = DemoCa.load_or_create(Path(cafile).parent)
    settings = Settings(runs=1, out=tmp_path, costs=ROOT / "bench" / "card-op-costs.csv", link=Link(), ghash_ms=0.0,
                        round_trips=1, handshakes_per_client=1, host_side=False)
    alg_null, copy = client_auth_benchmark(card, ca, cafile, tmp_path, settings)
    assert (alg_null.variant, copy.variant) == ("alg_null", "transcript_copy")
    # The trace's flight-3 handshake bytes run through the CertificateVerify (4 + 4 + a DER
    # ECDSA signature of 8 to 72 bytes), which the copy stops before; one record header.
    through_verify = copy.run.samples[0].trace.session_hash_bytes
    assert alg_null.transcript_copy_bytes == 0
    assert 4 + 4 + 8 <= through_verify - (copy.transcript_copy_bytes - 5) <= 4 + 4 + 72
    for auth in (alg_null, copy):
        # OpenSSL sends the chain it builds from its trust store: the leaf and the CA. The card
        # verifies the leaf with the CA certificate's key, that one with the stored CA's key,
        # then the CertificateVerify.
        assert auth.run.count("ecdsa_verify") == 3 and auth.run.count("ecdsa_sign") == 1
        assert auth.run.handshake("apdus") == 3
    extra = copy.run.handshake("bytes_sent") - alg_null.run.handshake("bytes_sent")
    assert abs(extra - copy.transcript_copy_bytes) <= 2  # two handshakes: the ECDSA signatures' DER lengths vary
    assert not card.status(card.slot or 0).policy & Policy.CLIENT_AUTH_OPTIONAL  # policy put back
    counted_handshake(card, cafile)  # and a client without a certificate is served again


# ---- python -m host.bench --quick ---------------------------------------------------------------

FIELDS = ("kind", "suite", "mode", "card", "metric", "value", "unit", "runs", "commit", "timestamp", "machine")
PLOTS = ("modeled_handshake.png", "apdus_bytes_per_phase.png", "scaling.png", "host_throughput.png")


def filled(value: object) -> bool:
    if value is None or value == "" or value == {}:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(filled(v) for v in value.values())
    return True


@pytest.mark.simulator
@pytest.mark.timeout(600)
def test_quick_benchmark_writes_complete_json_a_summary_and_plots(applet_classes: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "host.bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=580, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads((tmp_path / "results.json").read_text())
    assert records
    for record in records:
        assert set(FIELDS) <= set(record), record
        assert all(filled(record[name]) for name in FIELDS), record
        assert isinstance(record["value"], (int, float)) and record["runs"] >= 1
    kinds = {r["kind"] for r in records}
    assert {"sim", "model", "target", "host", "scaling", "client_auth", "client_auth_model"} <= kinds, kinds
    suites = {r["suite"] for r in records if r["kind"] == "sim"}
    assert len(suites) == 5   # the four ECDHE-ECDSA suites and PSK-AES128-CCM8 (issue 12)
    modes = {r["mode"] for r in records if r["kind"] == "sim"}
    assert {"extended resumed (ID)", "extended resumed (ticket)", "extended PSK"} <= modes, modes
    for name in PLOTS:
        assert (tmp_path / name).stat().st_size > 1000, name
    summary = (tmp_path / "summary.md").read_text()
    assert "J3R180" in summary and "## Resumed and PSK handshakes" in summary
    assert "Not measured" not in summary, summary
    fragmenting = {r["metric"]: r["value"] for r in records if r["kind"] == "fragmenting"}
    # A client sending 1-byte records sends several KB more; the card gets the same bytes (issue 9).
    assert fragmenting["client_bytes.records_of_1"] > fragmenting["client_bytes.whole_records"] + 1000
    assert fragmenting["bytes_to_card.handshake.records_of_1"] == fragmenting["bytes_to_card.handshake.whole_records"]
    assert "fragments its handshake" in summary
    assert "full + client auth, transcript copy" in summary and "target <= 600 ms" in summary
