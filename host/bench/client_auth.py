"""Full handshakes with client authentication (issue 12 item 6, docs/benchmark.md): on the
benchmark's simulated card, GCM over extended APDUs, Python's `ssl` presenting a P-256 client
certificate of the CA the card trusts, under policy `required` with dates checked (SET TIME). Two
ways to verify the CertificateVerify (docs/apdu.md, docs/quirks.md ECDSA_PRECOMPUTED_HASH): ECDSA
over the card's own session hash (ALG_NULL), and the transcript copy the host sends for a card
without it (forced here; its bytes measured). Each is priced on every card row beside the full
handshake without client authentication."""
from __future__ import annotations

import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tqdm import tqdm

from host.bench.client import HandshakeError, MemoryTlsClient, client_context, drive_handshake
from host.bench.results import MeasurementError, Results, Settings
from host.bench.runs import GCM, HANDSHAKE_PHASES, IDENTITY, PHASES, Sample, SimRun, record_round
from host.card import cost_model
from host.card.commands import SeTlsCard
from host.card.cost_model import Breakdown, UnitCosts, Workload
from host.card.numbers import Counter
from host.demo_pki import DemoCa
from host.iso7816.layers import Traffic
from host.provision import demo_operator
from host.provision.lifecycle import set_cas

VARIANTS = ("alg_null", "transcript_copy")
LABELS = {"full": "full (no client certificate)", "alg_null": "full + client auth, ECDSA ALG_NULL",
          "transcript_copy": "full + client auth, transcript copy"}
TARGET_CLIENT_AUTH_MS = 600.0  # issue 12 item 6, on the J3R180 model
# SHA-256 computations beyond the full handshake's two transcript digests: the third digest
# (through the CertificateVerify, for the Finished) and the CA lookup's hash of the issuer name;
# the transcript copy adds the digest compared with the session hash.
EXTRA_DIGESTS = {"alg_null": 2, "transcript_copy": 3}


@dataclass
class ClientAuthRun:
    """The handshakes of one verify path, with the client's chain and the transcript copy."""

    variant: str
    run: SimRun
    client_chain_bytes: int  # the leaf's DER (OpenSSL sends the CA's certificate after it)
    transcript_copy_bytes: float


def client_credentials(ca: DemoCa, directory: Path) -> tuple[str, str]:
    """cert.pem and key.pem of a client certificate of `ca` (CN=bench-client)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue_client_certificate(key.public_key(), "bench-client")
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def require_client_auth(card: SeTlsCard, ca: DemoCa) -> None:
    """Policy `required` with dates, the CA trusted, a few revoked serials (the list is walked
    on every handshake), the host's clock set; GCM the only suite."""
    card.open_operator_session(demo_operator())
    slot = card.slot or 0
    set_cas(card, slot, [ca.certificate])
    card.put_policy(slot, export_keys=True, client_auth="required", client_dates=True)
    card.put_revoked([0x5EC0DE, 0x0BAD, 0x1234567890ABCDEF])
    card.put_suites(slot, (GCM,))
    card.set_time()


def one_client_auth_handshake(card: SeTlsCard, cafile: str, cert: str, key: str, run: SimRun,
                              variant: str) -> tuple[Sample, int]:
    """A full handshake with the client certificate, then 1 KB each way; the transcript copy's bytes."""
    stats = card.session.stats
    context = client_context(cafile, GCM)
    context.load_cert_chain(cert, key)
    client = MemoryTlsClient(context)
    card.force_transcript_copy = variant == "transcript_copy"
    card.counters(reset=True)
    stats.reset()
    start = time.perf_counter()
    try:
        trace = drive_handshake(card, client, stats, IDENTITY, transcript_copy=card.transcript_copy_type)
    except (HandshakeError, ssl.SSLError) as exc:
        raise MeasurementError(f"client auth ({variant}): the handshake failed: {exc}") from exc
    finally:
        card.force_transcript_copy = False
    wall = time.perf_counter() - start
    if card.client_subject() != "bench-client":
        raise MeasurementError(f"client auth ({variant}): the card did not report the client's subject")
    counts = card.counters(reset=True)
    record_counts, record_wall = record_round(card, client, f"client auth ({variant})")
    traffic = {name: replace(stats.phases.get(name, Traffic())) for name in PHASES}
    return Sample(traffic, counts, record_counts, wall * 1000, record_wall * 1000, trace), trace.transcript_copy_bytes


def client_auth_benchmark(card: SeTlsCard, ca: DemoCa, cafile: str, directory: Path,
                          settings: Settings) -> list[ClientAuthRun]:
    """settings.runs handshakes per verify path on `card` (unlocked, extended APDUs); the card's
    policy is back to no client authentication afterwards."""
    cert, key = client_credentials(ca, directory)
    chain_bytes = len(x509.load_pem_x509_certificate(Path(cert).read_bytes()).public_bytes(
        serialization.Encoding.DER))
    require_client_auth(card, ca)
    out = []
    try:
        with tqdm(total=len(VARIANTS) * settings.runs, desc="client auth on jcardsim", unit="hs",
                  file=sys.stderr) as bar:
            for variant in VARIANTS:
                run = SimRun(GCM, "extended", len(card.certificate_list(card.slot or 0)))
                one_client_auth_handshake(card, cafile, cert, key, run, variant)  # warm-up, not counted
                copies = []
                for _ in range(settings.runs):
                    sample, copy = one_client_auth_handshake(card, cafile, cert, key, run, variant)
                    run.samples.append(sample)
                    copies.append(copy)
                    bar.update()
                out.append(ClientAuthRun(variant, run, chain_bytes, float(max(copies))))
    finally:
        card.open_operator_session(demo_operator())
        card.put_policy(card.slot or 0, export_keys=True)
    return out


# ---- the model and the results ------------------------------------------------------------------

@dataclass
class ClientAuthModeled:
    """One verify path priced on one card row."""

    auth: ClientAuthRun
    costs: UnitCosts
    handshake: Breakdown


def workload(auth: ClientAuthRun) -> Workload:
    run = auth.run
    counts = {name: run.count(name) for name in (counter.key for counter in Counter)}
    digests = cost_model.digest_calls(counts["hmac"], 2 + EXTRA_DIGESTS[auth.variant])
    return Workload(counts, digests, cost_model.aes_calls(counts["aes_blocks"], False, 2),
                    run.handshake("apdus"), run.handshake("bytes_sent") + run.handshake("bytes_received"))


def model_client_auth(runs: Sequence[ClientAuthRun], costs: Sequence[UnitCosts],
                      settings: Settings) -> list[ClientAuthModeled]:
    return [ClientAuthModeled(auth, card, cost_model.model(workload(auth), card, settings.link, settings.ghash_ms))
            for auth in runs for card in costs]


def client_auth_results(runs: Sequence[ClientAuthRun], modeled: Sequence[ClientAuthModeled],
                        results: Results) -> None:
    """kind `client_auth` (mode = the verify path): what the simulator measured; kind
    `client_auth_model`: the modeled ms per card row, and the target on the reference card."""
    for auth in runs:
        run = auth.run

        def add(metric: str, value: float, unit: str, card: str = "jcardsim", kind: str = "client_auth",
                auth: ClientAuthRun = auth) -> None:
            results.add(kind, auth.run.suite.openssl_name, auth.variant, card, metric, value, unit,
                        len(auth.run.samples))

        for phase in HANDSHAKE_PHASES:
            add(f"apdus.{phase}", run.phase(phase, "apdus"), "APDUs")
            add(f"bytes_to_card.{phase}", run.phase(phase, "bytes_sent"), "bytes")
            add(f"bytes_from_card.{phase}", run.phase(phase, "bytes_received"), "bytes")
        add("apdus.handshake", run.handshake("apdus"), "APDUs")
        add("bytes_to_card.handshake", run.handshake("bytes_sent"), "bytes")
        add("bytes_from_card.handshake", run.handshake("bytes_received"), "bytes")
        add("transcript_copy_bytes", auth.transcript_copy_bytes, "bytes")
        add("client_leaf_certificate_bytes", auth.client_chain_bytes, "bytes")
        for name in (counter.key for counter in Counter):
            add(f"ops.handshake.{name}", run.count(name), "operations")
        add("sim_wall_ms.handshake.median", run.median(lambda s: s.wall_ms), "ms (simulator)")
        for m in (m for m in modeled if m.auth is auth):
            for component, ms in m.handshake.components().items():
                add(f"handshake.{component}_ms", ms, "ms (modeled)", m.costs.card, "client_auth_model")
            add("handshake.total_ms", m.handshake.total, "ms (modeled)", m.costs.card, "client_auth_model")
            add("handshake.total_with_ghash_assumption_ms", m.handshake.total_with_ghash, "ms (modeled + assumed)",
                m.costs.card, "client_auth_model")
            add("handshake.target_ms", TARGET_CLIENT_AUTH_MS, "ms", m.costs.card, "client_auth_model")


__all__ = ["LABELS", "TARGET_CLIENT_AUTH_MS", "VARIANTS", "ClientAuthModeled", "ClientAuthRun",
           "client_auth_benchmark", "client_auth_results", "model_client_auth"]
