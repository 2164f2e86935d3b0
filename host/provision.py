"""Personalises an identity of a card: key generation in the card, a certificate from the CA,
the chain, the name, the policy, the cipher suites and, last, the PIN (after which changing the
identity needs the PIN).

    python -m host.provision --sim --pin 1234            # prints what it did on a simulated card
    python -m host.provision --reader "Virtual PCD 00 00" --pin 1234 --name server --export-keys
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host.card.commands import SeTlsCard
from host.demo_pki import DEMO_DIR, DemoCa, certificate_list
from host.tls.numbers import CipherSuite

log = logging.getLogger(__name__)

DEMO_PIN = "1234"
DEMO_IDENTITY = "server"


@dataclass
class IdentitySpec:
    name: str = DEMO_IDENTITY
    pin: str = DEMO_PIN
    slot: int = 0
    export_keys: bool = True
    suites: tuple[int, ...] = ()


def personalise(card: SeTlsCard, spec: IdentitySpec, ca: DemoCa,
                out_dir: Path | None = DEMO_DIR) -> x509.Certificate:
    """Runs the personalisation; returns the server certificate the card now presents.

    An identity that already has a PIN is personalised again only after that PIN is verified
    (the card refuses otherwise): `spec.pin` must be the current one."""
    if card.status(spec.slot).pin_set:
        card.verify(spec.slot, spec.pin)
    point = card.generate_key(spec.slot)
    certificate = ca.issue_server_certificate(point, common_name=f"{spec.name} (SE-TLS card)")
    card.put_chain(spec.slot, certificate_list([certificate]))
    card.put_name(spec.slot, spec.name)
    card.put_policy(spec.slot, export_keys=spec.export_keys)
    if spec.suites:
        card.put_suites(spec.slot, spec.suites)
    card.put_pin(spec.slot, spec.pin)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{spec.name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    log.info("identity %r personalised in slot %d: key generated in the card, certificate serial %x",
             spec.name, spec.slot, certificate.serial_number)
    return certificate


def personalise_simulated(cards: list[SeTlsCard], spec: IdentitySpec) -> None:
    """`--sim` cards start blank: each gets the identity, with a certificate from the demo CA
    (build/demo/). Only simulated cards are personalised this way; real ones by this CLI."""
    ca = DemoCa.load_or_create(DEMO_DIR)
    for card in cards:
        personalise(card, spec, ca)


def parse_suites(text: str) -> tuple[int, ...]:
    by_name = {suite.openssl_name.lower(): suite.value for suite in CipherSuite}
    suites = []
    for item in filter(None, (s.strip().lower() for s in text.split(","))):
        if item in by_name:
            suites.append(by_name[item])
        else:
            try:
                suites.append(int(item, 16))
            except ValueError:
                raise argparse.ArgumentTypeError(f"unknown cipher suite {item!r}") from None
    return tuple(suites)


def main(argv: list[str] | None = None) -> int:
    from host.card.commands import CardOpenError, open_cards

    parser = argparse.ArgumentParser(prog="python -m host.provision", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sim", action="store_true", help="a simulated card (jcardsim); its state is lost at exit")
    where.add_argument("--reader", help="PC/SC reader name (or a unique part of it)")
    parser.add_argument("--name", default=DEMO_IDENTITY, help="identity name clients' sessions use")
    parser.add_argument("--pin", default=DEMO_PIN, help="the identity's PIN (4-16 characters)")
    parser.add_argument("--current-pin", help="PIN already set on this identity, to re-personalise it")
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--export-keys", action="store_true", help="allow tandem mode (session keys to the host)")
    parser.add_argument("--suites", type=parse_suites, default=(), help="e.g. c02b,c0ae (server's order)")
    parser.add_argument("--ca-dir", type=Path, default=DEMO_DIR, help="where the demo CA lives")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        with open_cards(sim=1 if args.sim else 0, readers=[args.reader] if args.reader else []) as cards:
            card = cards[0]
            if args.current_pin:
                card.verify(args.slot, args.current_pin)
            spec = IdentitySpec(args.name, args.pin, args.slot, args.export_keys, args.suites)
            cert = personalise(card, spec, DemoCa.load_or_create(args.ca_dir), args.ca_dir)
            print(f"identity {args.name!r} ready: {cert.subject.rfc4514_string()}")
    except CardOpenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
