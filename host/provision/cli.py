"""`python -m host.provision COMMAND`: the card's lifecycle (docs/provisioning.md).

Human output by default, `--json` for scripts; every error is one sentence on stderr. Secrets never
come from the command line: PINs and PUKs from $SETLS_PIN, $SETLS_PUK, $SETLS_NEW_PIN or a prompt,
the operator's private key from the PEM file `--operator-key` names (or $SETLS_OPERATOR_KEY), a PSK
from a file (`@FILE`) or standard input (`-`).
"""
from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from host.card.commands import CardOpenError, OperatorAuthError, SeTlsCard, open_cards
from host.card.errors import (
    AccessDeniedError,
    AlreadyInitialisedError,
    CardRefusedError,
    NotInitialisedError,
    OperatorRequiredError,
    PinBlockedError,
    UnknownIdentityError,
    WrongDataError,
    WrongPinError,
)
from host.card.numbers import MAX_IDENTITIES, Capability, Policy
from host.card.operator import OperatorKey, OperatorKeyError, public_point_from_pem, spki_sha256
from host.demo_pki import DEMO_DIR, DemoCa, ensure_demo_operator_key
from host.iso7816.channel import ChannelError
from host.provision import APPLET_SUITES, DEFAULT_SUITES, PIN_LENGTHS, parse_suites
from host.provision.csr import parse_san, parse_subject
from host.provision.lifecycle import (
    KeyInfo,
    ProvisionError,
    generate_key,
    load_chain,
    parse_serial,
    read_certificates,
    request_certificate,
    revoke,
    set_cas,
    unrevoke,
)
from host.tls.numbers import CipherSuite

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_CONFIRMED = 3

EPILOG = """\
exit status:
  0  done
  1  refused: by the card (wrong PIN or PUK, blocked, no operator session, a MAC or signature it
     does not accept, data it refuses) or by a check of this command (a chain that does not
     certify the card's key, a chain out of order)
  2  usage or environment: wrong arguments, no reader or card, a file that cannot be read
  3  not confirmed: wipe without --yes and without a "yes" at the prompt

secrets: $SETLS_PIN, $SETLS_PUK, $SETLS_NEW_PIN (else a prompt on a terminal); the operator's
private key: --operator-key FILE or $SETLS_OPERATOR_KEY (PEM, P-256; --sim uses build/demo's).
"""

Result = dict[str, Any]


class UsageError(Exception):
    """Wrong arguments or environment: exit 2."""


class NotConfirmed(Exception):
    """The user did not confirm: exit 3."""


# ---- arguments ------------------------------------------------------------------------------------

def san_argument(text: str) -> str:
    """--san's type: refused by argparse, before any card is opened, unless DNS:, IP: or bare."""
    try:
        parse_san(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--san {text}: ")) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)   # every command's, demo-ca's too
    output.add_argument("--json", action="store_true", help="print the result as JSON")
    output.add_argument("-v", "--verbose", action="store_true")
    common = argparse.ArgumentParser(add_help=False, parents=[output])   # the commands that reach a card
    where = common.add_mutually_exclusive_group()
    where.add_argument("--reader", metavar="NAME", help="PC/SC reader (name or a unique part of it)")
    where.add_argument("--sim", action="store_true", help="a simulated card (jcardsim): blank, forgotten at exit")
    common.add_argument("--operator-key", type=Path, metavar="FILE",
                        help="the operator's private key (PEM) for operator commands ($SETLS_OPERATOR_KEY)")
    slot = argparse.ArgumentParser(add_help=False)
    slot.add_argument("--slot", type=int, default=0, choices=range(MAX_IDENTITIES), help="identity slot (default 0)")

    parser = argparse.ArgumentParser(prog="python -m host.provision", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Provision a card running the SE-TLS applet: keys made in the "
                                                 "card, CSRs it signs, chains, CAs, PSKs, policy, PIN and PUK.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common, *parents])

    p = add("init", "one time, after install: set the PIN, the PUK and the operator's public key")
    p.add_argument("--operator-public", type=Path, metavar="FILE",
                   help="the operator's public key, certificate or private key (PEM); --sim: the demo key")
    add("info", "applet version, capabilities, memory, identities, PIN and PUK tries")
    p = add("keygen", "generate the identity's P-256 key pair in the card (operator)", slot)
    p.add_argument("--staged", action="store_true",
                   help="beside the serving key: the old key and chain serve until load-chain commits the new")
    p = add("csr", "a PKCS#10 request for the identity's key, signed by the card (operator)", slot)
    p.add_argument("--subject", required=True, help="e.g. 'CN=device-42,O=Acme'")
    p.add_argument("--san", action="append", default=[], metavar="NAME", type=san_argument,
                   help="DNS:name or IP:address (repeat)")
    p.add_argument("--staged", action="store_true", help="for the staged key")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the PEM request there (default: stdout)")
    p = add("load-chain", "store the chain (leaf first) after checking it certifies the card's key (operator)", slot)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p = add("set-ca", "the CAs client certificates must chain to (operator)", slot)
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="CA certificates (none: trust none)")
    p = add("set-psk", "store a pre-shared key (operator); KEY: hex, @FILE (hex or raw) or - (stdin)")
    p.add_argument("id", help="PSK identity")
    p.add_argument("key", metavar="KEY")
    p = add("del-psk", "delete a pre-shared key (operator)")
    p.add_argument("id", help="PSK identity")
    add("list-psk", "the PSK identities (never the keys)")
    p = add("policy", "name, key export, suites, client authentication, SNI names (operator)", slot)
    p.add_argument("--name", help="the identity's name (what the host asks for)")
    p.add_argument("--export-keys", choices=("yes", "no"), help="may the session keys go to the host (tandem mode)")
    p.add_argument("--suites", help="e.g. c02b,c0ae (server's order)")
    p.add_argument("--client-auth", choices=("none", "optional", "required"),
                   help="ask clients for a certificate (optional) or refuse those without one (required)")
    p.add_argument("--client-dates", action=argparse.BooleanOptionalAction, default=None,
                   help="check client certificates' validity dates against the host's clock (SET TIME); "
                        "no clock given: no client certificate is accepted")
    p.add_argument("--sni", nargs="*", metavar="NAME", help="server names this identity answers")
    p = add("revoke", "add client certificate serial numbers to the card's revoked list (operator)")
    p.add_argument("serials", nargs="+", metavar="SERIAL", help="hex, as openssl x509 -serial prints it")
    p = add("unrevoke", "take serial numbers off the card's revoked list (operator)")
    p.add_argument("serials", nargs="+", metavar="SERIAL", help="hex, as openssl x509 -serial prints it")
    add("revoked", "the card's revoked client certificate serial numbers")
    add("change-pin", "change the PIN ($SETLS_PIN: current, $SETLS_NEW_PIN: new)", slot)
    add("unblock-pin", "unblock the PIN with the PUK ($SETLS_PUK, $SETLS_NEW_PIN)", slot)
    add("reset-pin", "the operator sets a new PIN ($SETLS_NEW_PIN), which also unblocks it", slot)
    p = add("wipe", "forget the identity's keys, chains, CAs, name and policy (operator)", slot)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = sub.add_parser("demo-ca", help="the demo CA of build/demo/", description="the demo CA of build/demo/")
    demo = p.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    p = demo.add_parser("issue", help="issue a certificate for a CSR", parents=[output],
                        description="issue a certificate for a CSR with the demo CA (no card involved)")
    p.add_argument("csr", type=Path, metavar="CSR")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the PEM certificate there (default: stdout)")
    p.add_argument("--ca-dir", type=Path, default=DEMO_DIR, help="where the demo CA lives")
    p = demo.add_parser("client", help="issue a client certificate and its key (NAME.pem, NAME.key)",
                        description="a P-256 key and a TLS client certificate (CN=NAME, clientAuth) from the "
                                    "demo CA, for openssl s_client -cert/-key or curl --cert/--key",
                        parents=[common])
    p.add_argument("name", metavar="NAME", help="the certificate's commonName (what the server reports)")
    p.add_argument("--out-dir", type=Path, default=Path("."), metavar="DIR",
                   help="where NAME.pem and NAME.key go (default: the current directory)")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.add_argument("--ca-dir", type=Path, default=DEMO_DIR, help="where the demo CA lives")
    return parser


# ---- secrets ---------------------------------------------------------------------------------------

def secret(env: str, prompt: str) -> str:
    """A PIN or PUK from $env or a prompt; a PIN outside 4-16 bytes is refused before the card
    sees it (a wrong one would cost a try)."""
    value = os.environ.get(env)
    if not value:
        if not sys.stdin.isatty():
            raise UsageError(f"no {prompt}: set ${env} or run in a terminal")
        value = getpass.getpass(f"{prompt}: ")
    low, high = PIN_LENGTHS
    if prompt.endswith("PIN") and not low <= len(value.encode()) <= high:
        raise UsageError(f"a {prompt} has {low} to {high} characters (bytes); ${env} has {len(value.encode())}")
    return value


def psk_value(text: str) -> bytes:
    if text == "-":
        raw = sys.stdin.buffer.read()
    elif text.startswith("@"):
        try:
            raw = Path(text[1:]).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the PSK file {text[1:]}: {exc.strerror}") from None
    else:
        raw = text.encode()
    stripped = raw.strip()
    try:
        return bytes.fromhex(stripped.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        if text.startswith("@") or text == "-":
            return raw
        raise UsageError("KEY is hex, @FILE or - (standard input)") from None


def operator_key(args: argparse.Namespace) -> OperatorKey | None:
    path = args.operator_key or (Path(os.environ["SETLS_OPERATOR_KEY"]) if os.environ.get("SETLS_OPERATOR_KEY")
                                 else None)
    if path is None and args.sim:
        path = ensure_demo_operator_key()
    if path is None:
        return None  # operator commands go without a session: the card refuses them (6F04)
    try:
        return OperatorKey.load(path)
    except OperatorKeyError as exc:
        raise UsageError(str(exc)) from None


# ---- the card -------------------------------------------------------------------------------------

@contextmanager
def the_card(args: argparse.Namespace) -> Iterator[SeTlsCard]:
    if not args.sim and not args.reader:
        raise UsageError("say which card: --reader NAME or --sim")
    with open_cards(sim=1 if args.sim else 0, readers=[args.reader] if args.reader else []) as cards:
        yield cards[0]


def operator_session(card: SeTlsCard, args: argparse.Namespace) -> None:
    key = operator_key(args)
    if key is not None:
        card.open_operator_session(key)


def key_result(info: KeyInfo, staged: bool) -> Result:
    return {"public_key_pem": info.pem, "spki_sha256": info.spki_sha256, "staged": staged}


# ---- the commands ---------------------------------------------------------------------------------

def cmd_init(card: SeTlsCard, args: argparse.Namespace) -> Result:
    if args.operator_public is not None:
        try:
            point = public_point_from_pem(args.operator_public)
        except OperatorKeyError as exc:
            raise UsageError(str(exc)) from None
    else:
        key = operator_key(args)
        if key is None:
            raise UsageError("give the operator's public key: --operator-public FILE")
        point = key.public_point
    pin, puk = secret("SETLS_PIN", "PIN"), secret("SETLS_PUK", "PUK")
    card.initialize(pin, puk, point)
    return {"initialised": True, "operator_spki_sha256": spki_sha256(point)}


def identity_info(card: SeTlsCard, slot: int) -> Result:
    status = card.status(slot)
    info: Result = {"slot": slot, "name": card.identity_name(slot), "key": status.key_ready,
                    "staged_key": status.staged_key, "chain_bytes": status.chain_length, "chain": [],
                    "export_keys": bool(status.policy & Policy.EXPORT_KEYS),
                    "client_auth": ("required" if status.policy & Policy.CLIENT_AUTH_REQUIRED else
                                    "optional" if status.policy & Policy.CLIENT_AUTH_OPTIONAL else "none"),
                    "client_dates": bool(status.policy & Policy.CLIENT_DATES_REQUIRED),
                    "suites": [_suite_name(s) for s in status.suites], "sni": card.sni_names(slot),
                    "cas": status.ca_count, "pin_tries_left": status.pin_tries_left}
    if status.key_ready:
        info["spki_sha256"] = KeyInfo(card.public_key(slot)).spki_sha256
    if status.staged_key:
        info["staged_spki_sha256"] = KeyInfo(card.public_key(slot, staged=True)).spki_sha256
    if status.chain_length:
        data, at = card.certificate_list(slot), 0
        while at < len(data):
            n = int.from_bytes(data[at:at + 3], "big")
            cert = x509.load_der_x509_certificate(data[at + 3:at + 3 + n])
            info["chain"].append(cert.subject.rfc4514_string())
            at += 3 + n
        info["subject"] = info["chain"][0]
    return info


def _suite_name(value: int) -> str:
    try:
        return CipherSuite(value).openssl_name
    except ValueError:
        return f"{value:04x}"


def cmd_info(card: SeTlsCard, args: argparse.Namespace) -> Result:
    caps = card.session.caps
    status = card.card_status()
    result: Result = {
        "reader": card.name, "applet_version": f"{caps.version[0]}.{caps.version[1]}",
        "capabilities": [str(flag.name).lower() for flag in Capability if flag in caps.flags],
        "message_capacity": caps.message_capacity, "initialised": status.initialised,
        "free_eeprom": status.free_eeprom, "free_ram": status.free_ram, "puk_tries_left": status.puk_tries_left,
        "psks": status.psk_count, "psk_capacity": status.psk_capacity,
        "identities": [identity_info(card, slot) for slot in range(caps.identity_slots or MAX_IDENTITIES)],
    }
    if status.initialised:
        result["operator_spki_sha256"] = spki_sha256(card.operator_public_key())
    return result


def cmd_keygen(card: SeTlsCard, args: argparse.Namespace) -> Result:
    """A key for the identity; a new identity (one that still has the applet's install-time suite
    list) is given DEFAULT_SUITES: AEAD only, CBC-SHA256 off until the operator sets it."""
    operator_session(card, args)
    result = {"slot": args.slot, **key_result(generate_key(card, args.slot, args.staged), args.staged)}
    if not args.staged and card.status(args.slot).suites == APPLET_SUITES:
        card.put_suites(args.slot, DEFAULT_SUITES)
        result["suites"] = [_suite_name(s) for s in DEFAULT_SUITES]
    return result


def cmd_csr(card: SeTlsCard, args: argparse.Namespace) -> Result:
    try:
        subject = parse_subject(args.subject)
        sans = [parse_san(s) for s in args.san]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.out and not args.out.parent.is_dir():
        raise UsageError(f"cannot write {args.out}: no directory {args.out.parent}")
    operator_session(card, args)
    csr = request_certificate(card, args.slot, subject, sans, args.staged)
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    if args.out:
        args.out.write_text(pem)
    return {"slot": args.slot, "subject": csr.subject.rfc4514_string(), "csr_pem": pem,
            "out": str(args.out) if args.out else None, "staged": args.staged}


def cmd_load_chain(card: SeTlsCard, args: argparse.Namespace) -> Result:
    chain = read_certificates(args.files)
    operator_session(card, args)
    which = load_chain(card, args.slot, chain)
    return {"slot": args.slot, "key": which, "chain": [c.subject.rfc4514_string() for c in chain]}


def cmd_set_ca(card: SeTlsCard, args: argparse.Namespace) -> Result:
    certs = read_certificates(args.files) if args.files else []
    operator_session(card, args)
    set_cas(card, args.slot, certs)
    return {"slot": args.slot, "cas": [c.subject.rfc4514_string() for c in certs]}


def cmd_set_psk(card: SeTlsCard, args: argparse.Namespace) -> Result:
    key = psk_value(args.key)
    if not 16 <= len(key) <= 63:
        raise UsageError(f"a PSK is 16 to 63 bytes, not {len(key)}")
    operator_session(card, args)
    card.set_psk(args.id.encode(), key)
    return {"psk": args.id}


def cmd_del_psk(card: SeTlsCard, args: argparse.Namespace) -> Result:
    operator_session(card, args)
    card.delete_psk(args.id.encode())
    return {"deleted": args.id}


def cmd_list_psk(card: SeTlsCard, args: argparse.Namespace) -> Result:
    return {"psks": [i.decode(errors="replace") for i in card.psk_identities()]}


def cmd_policy(card: SeTlsCard, args: argparse.Namespace) -> Result:
    try:
        suites = parse_suites(args.suites) if args.suites else ()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    operator_session(card, args)
    if args.name:
        card.put_name(args.slot, args.name)
    if args.export_keys or args.client_auth or args.client_dates is not None:
        status = card.status(args.slot)
        export = (args.export_keys == "yes") if args.export_keys else bool(status.policy & Policy.EXPORT_KEYS)
        auth = args.client_auth or ("required" if status.policy & Policy.CLIENT_AUTH_REQUIRED else
                                    "optional" if status.policy & Policy.CLIENT_AUTH_OPTIONAL else "none")
        dates = (args.client_dates if args.client_dates is not None
                 else bool(status.policy & Policy.CLIENT_DATES_REQUIRED))
        card.put_policy(args.slot, export, auth, client_dates=dates)
    if suites:
        card.put_suites(args.slot, suites)
    if args.sni is not None:
        card.put_sni(args.slot, args.sni)
    return identity_info(card, args.slot)


def serials_of(args: argparse.Namespace) -> list[int]:
    try:
        return [parse_serial(text) for text in args.serials]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_revoke(card: SeTlsCard, args: argparse.Namespace) -> Result:
    serials = serials_of(args)
    operator_session(card, args)
    return {"revoked": [f"{s:X}" for s in revoke(card, serials)]}


def cmd_unrevoke(card: SeTlsCard, args: argparse.Namespace) -> Result:
    serials = serials_of(args)
    operator_session(card, args)
    return {"revoked": [f"{s:X}" for s in unrevoke(card, serials)]}


def cmd_revoked(card: SeTlsCard, args: argparse.Namespace) -> Result:
    return {"revoked": [f"{s:X}" for s in card.revoked()]}


def cmd_change_pin(card: SeTlsCard, args: argparse.Namespace) -> Result:
    card.change_pin(args.slot, secret("SETLS_PIN", "current PIN"), secret("SETLS_NEW_PIN", "new PIN"))
    return {"slot": args.slot, "pin": "changed"}


def cmd_unblock_pin(card: SeTlsCard, args: argparse.Namespace) -> Result:
    card.unblock_pin(args.slot, secret("SETLS_PUK", "PUK"), secret("SETLS_NEW_PIN", "new PIN"))
    return {"slot": args.slot, "pin": "unblocked"}


def cmd_reset_pin(card: SeTlsCard, args: argparse.Namespace) -> Result:
    new = secret("SETLS_NEW_PIN", "new PIN")
    operator_session(card, args)
    card.reset_pin(args.slot, new)
    return {"slot": args.slot, "pin": "reset"}


def cmd_wipe(card: SeTlsCard, args: argparse.Namespace) -> Result:
    if not args.yes:
        if not sys.stdin.isatty():
            raise NotConfirmed("wipe not confirmed: add --yes")
        answer = input(f"wipe identity slot {args.slot} of {card.name}: its key is lost for good. Type yes: ")
        if answer.strip().lower() != "yes":
            raise NotConfirmed("wipe not confirmed")
    operator_session(card, args)
    card.wipe(args.slot)
    return {"slot": args.slot, "wiped": True}


def cmd_demo_issue(args: argparse.Namespace) -> Result:
    try:
        csr = x509.load_pem_x509_csr(args.csr.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {args.csr}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{args.csr} is not a PEM certificate request") from None
    try:
        cert = DemoCa.load_or_create(args.ca_dir).issue_from_csr(csr)
    except ValueError as exc:
        raise ProvisionError(f"the demo CA refuses {args.csr}: {exc}") from None
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    if args.out:
        args.out.write_text(pem)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": f"{cert.serial_number:x}", "certificate_pem": pem, "out": str(args.out) if args.out else None,
            "ca": str(args.ca_dir / "ca.pem")}


def cmd_demo_client(args: argparse.Namespace) -> Result:
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UsageError(f"NAME {args.name!r} names the files NAME.pem and NAME.key: no '/', no leading '.'")
    if not 1 <= args.days <= 36500:
        raise UsageError(f"--days {args.days} is outside 1-36500")
    if not args.out_dir.is_dir():
        raise UsageError(f"cannot write into {args.out_dir}: no such directory")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = DemoCa.load_or_create(args.ca_dir).issue_client_certificate(
        key.public_key(), args.name, not_after=now + datetime.timedelta(days=args.days))
    cert_path, key_path = args.out_dir / f"{args.name}.pem", args.out_dir / f"{args.name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": f"{cert.serial_number:X}", "certificate": str(cert_path), "key": str(key_path),
            "ca": str(args.ca_dir / "ca.pem")}


COMMANDS: dict[str, Callable[[SeTlsCard, argparse.Namespace], Result]] = {
    "init": cmd_init, "info": cmd_info, "keygen": cmd_keygen, "csr": cmd_csr, "load-chain": cmd_load_chain,
    "set-ca": cmd_set_ca, "set-psk": cmd_set_psk, "del-psk": cmd_del_psk, "list-psk": cmd_list_psk,
    "policy": cmd_policy, "change-pin": cmd_change_pin, "unblock-pin": cmd_unblock_pin,
    "reset-pin": cmd_reset_pin, "wipe": cmd_wipe, "revoke": cmd_revoke, "unrevoke": cmd_unrevoke,
    "revoked": cmd_revoked,
}


# ---- output and errors ----------------------------------------------------------------------------

def human(command: str, result: Result) -> str:
    if command == "info":
        lines = [f"card {result['reader']}: applet {result['applet_version']}, "
                 f"{'initialised' if result['initialised'] else 'NOT initialised (run init)'}",
                 f"  capabilities: {', '.join(result.get('capabilities', []))}",
                 f"  free memory: EEPROM {result['free_eeprom']} bytes (7FFF = 32767 or more), "
                 f"RAM {result['free_ram']} bytes",
                 f"  PUK tries left: {result['puk_tries_left']}, PSKs: {result['psks']} of {result['psk_capacity']}"]
        if "operator_spki_sha256" in result:
            lines.append(f"  operator key SHA-256: {result['operator_spki_sha256']}")
        for ident in result["identities"]:
            lines += identity_lines(ident)
        return "\n".join(lines)
    if "public_key_pem" in result:
        what = "staged key (serving key unchanged until load-chain)" if result["staged"] else "key"
        suites = (f"\nsuites (new identity, AEAD only; CBC-SHA256 with policy --suites): {', '.join(result['suites'])}"
                  if "suites" in result else "")
        return (f"identity slot {result['slot']}: new {what} generated in the card\n{result['public_key_pem']}"
                f"SPKI SHA-256: {result['spki_sha256']}{suites}")
    if "csr_pem" in result:
        head = f"certification request for {result['subject']}, signed by the card"
        return head + (f": {result['out']}" if result["out"] else "\n" + result["csr_pem"].rstrip())
    if "certificate_pem" in result:
        head = f"issued {result['subject']} by {result['issuer']}, serial {result['serial']}"
        return head + (f": {result['out']}" if result["out"] else "\n" + result["certificate_pem"].rstrip())
    if command == "init":
        return f"card initialised: PIN and PUK set, operator key SHA-256 {result['operator_spki_sha256']}"
    if command == "load-chain":
        note = " (the staged key now serves)" if result["key"] == "staged" else ""
        return f"identity slot {result['slot']}: chain loaded and committed{note}: " + " <- ".join(result["chain"])
    if command == "set-ca":
        return f"identity slot {result['slot']}: {len(result['cas'])} CA(s) trusted" + "".join(
            f"\n  {c}" for c in result["cas"])
    if command == "demo-ca client":
        return (f"issued {result['subject']} by {result['issuer']}, serial {result['serial']}: "
                f"{result['certificate']}, key {result['key']}")
    if "revoked" in result:
        return ("revoked serials: " + " ".join(result["revoked"])) if result["revoked"] else "no revoked serial"
    if command == "list-psk":
        return "\n".join(result["psks"]) if result["psks"] else "no PSK"
    if command == "policy":
        return "\n".join(identity_lines(result))
    return ", ".join(f"{k}: {v}" for k, v in result.items())


def identity_lines(ident: Result) -> list[str]:
    staged = f"; staged key: SPKI SHA-256 {ident['staged_spki_sha256']}" if ident["staged_key"] else ""
    return [f"identity slot {ident['slot']}: {ident['name'] or '(no name)'}",
            f"  key: {'yes, SPKI SHA-256 ' + ident['spki_sha256'] if ident['key'] else 'no'}{staged}",
            f"  chain: {' <- '.join(ident['chain']) if ident['chain'] else 'none'}",
            f"  policy: export keys {'yes' if ident['export_keys'] else 'no'}, client auth {ident['client_auth']}"
            f"{' (dates checked)' if ident['client_dates'] else ''}, "
            f"suites {','.join(ident['suites'])}, SNI {','.join(ident['sni']) or '-'}, CAs {ident['cas']}",
            f"  PIN tries left: {ident['pin_tries_left']}"]


def refusal_sentence(command: str, exc: CardRefusedError, slot: int | None) -> str:
    where = f" (identity slot {slot})" if slot is not None else ""
    status = f" [{exc.sw:04X}]" if exc.sw is not None else ""
    if isinstance(exc, OperatorRequiredError):
        return (f"the card refused {command}{where}: it needs the operator session; give the operator's "
                f"key with --operator-key FILE{status}")
    if isinstance(exc, WrongPinError):
        what = "PUK" if command == "unblock-pin" else "PIN"
        left = exc.tries_left
        return f"wrong {what}: {left} {'try' if left == 1 else 'tries'} left{status}"
    if isinstance(exc, PinBlockedError):
        if command == "unblock-pin":
            return f"the PUK is blocked: the operator can still set a new PIN (reset-pin){status}"
        return f"the PIN{where} is blocked: unblock it with the PUK (unblock-pin){status}"
    if isinstance(exc, NotInitialisedError):
        return f"the card is not initialised: run init first{status}"
    if isinstance(exc, AlreadyInitialisedError):
        return (f"the card is initialised already: init runs once (to start over, reinstall the applet, "
                f"which deletes its keys){status}")
    if isinstance(exc, UnknownIdentityError):
        return f"the card has no such key{where}: run keygen first{status}"
    if isinstance(exc, WrongDataError):
        return f"the card refused the data of {command}{where}{status}"
    if isinstance(exc, AccessDeniedError) and exc.sw == 0x6982:
        return (f"the card refused {command}{where}: the operator's signature or MAC was not accepted "
                f"(is --operator-key the key set at init?){status}")
    return f"{command}{where}: {exc}"


def main(argv: list[str] | None = None, card: SeTlsCard | None = None) -> int:
    """Runs one command; `card` (tests, embedding) is an open card to use instead of --reader/--sim."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    command = f"demo-ca {args.demo_command}" if args.command == "demo-ca" else args.command
    try:
        if args.command == "demo-ca":
            result = cmd_demo_issue(args) if args.demo_command == "issue" else cmd_demo_client(args)
        elif card is not None:
            card.session.select()  # as a new process would find it: no operator session
            card.operator = None
            result = COMMANDS[args.command](card, args)
        else:
            with the_card(args) as opened:
                result = COMMANDS[args.command](opened, args)
    except UsageError as exc:
        return _fail(f"{exc}", EXIT_USAGE)
    except NotConfirmed as exc:
        return _fail(f"{exc}", EXIT_NOT_CONFIRMED)
    except ProvisionError as exc:
        return _fail(f"{command}: {exc}", EXIT_REFUSED)
    except OperatorAuthError as exc:
        return _fail(f"{command}: {exc}", EXIT_REFUSED)
    except CardRefusedError as exc:
        return _fail(refusal_sentence(command, exc, getattr(args, "slot", None)), EXIT_REFUSED)
    except (CardOpenError, ChannelError) as exc:
        return _fail(f"cannot reach the card: {exc}", EXIT_USAGE)
    except ValueError as exc:  # a value the card cannot take (e.g. over 255 bytes)
        return _fail(f"{command}: {exc}", EXIT_USAGE)
    except OSError as exc:
        return _fail(f"{command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_USAGE)
    print(json.dumps(result, indent=2) if args.json else human(command, result))
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


__all__ = ["EXIT_NOT_CONFIRMED", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "build_parser", "main"]
