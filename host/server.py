"""`python -m host.server`: TLS servers whose handshake runs in the card.

    python -m host.server --sim --tls-echo 8444
    python -m host.server --reader "Virtual PCD 00 00" --pin 1234 --https 8443 --coaps-tcp 5684
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import ipaddress
import logging
import os
import signal
import socket
import sys

from host.apps.echo import echo_application
from host.card.commands import CardOpenError, open_cards
from host.provision import DEMO_IDENTITY, DEMO_PIN, IdentitySpec, personalise_simulated
from host.se_tls import Application, CardSlot, GenericServer, ServerTLS, Timeouts, TlsTandem

log = logging.getLogger("host.server")
PIN_ENV = "SETLS_PIN"
DEFAULT_BIND = ("127.0.0.1", "::1")   # both loopbacks: clients resolve localhost to either first
WILDCARDS = {"0.0.0.0": 4, "::": 6}


def bind_addresses(value: str) -> list[str]:
    """One `--bind` value: comma-separated IP addresses (IPv6 with or without brackets) or host
    names that resolve here; argparse turns the error into a one-line usage error."""
    addresses = []
    for part in value.split(","):
        address = part.strip()
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        if not address:
            raise argparse.ArgumentTypeError(f"an empty address in {value!r}")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            try:
                socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                raise argparse.ArgumentTypeError(
                    f"{address!r} is neither an IP address nor a host name this machine resolves") from None
        addresses.append(address)
    return addresses


def listen_addresses(requested: list[str] | None) -> list[str]:
    """The addresses to listen on, in order, without repeats: the default is both loopbacks;
    `::` brings `0.0.0.0` along (asyncio makes IPv6 listeners IPv6-only, so `::` alone would
    refuse IPv4 clients), and a wildcard stands for every other address of its family."""
    addresses = list(dict.fromkeys(requested or DEFAULT_BIND))
    if "::" in addresses and "0.0.0.0" not in addresses:
        addresses.insert(addresses.index("::") + 1, "0.0.0.0")
    covered = {family for address, family in WILDCARDS.items() if address in addresses}

    def family(address: str) -> int | None:
        try:
            return ipaddress.ip_address(address).version
        except ValueError:
            return None   # a host name: bound as asyncio resolves it
    return [a for a in addresses if a in WILDCARDS or family(a) not in covered]


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error(exc: OSError) -> str:
    """The reason of a failed bind in a few words (asyncio wraps it in a longer sentence)."""
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        return str(exc.strerror or exc).lower()
    reason = os.strerror(exc.errno).lower()
    if exc.errno == errno.EADDRNOTAVAIL:
        reason += " (not an address of this machine)"
    return reason


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.server",
                                     description="TLS servers whose handshake runs in a Java Card secure element.")
    cards = parser.add_argument_group("cards")
    cards.add_argument("--sim", nargs="?", type=int, const=1, default=0, metavar="N",
                       help="start N simulated cards (jcardsim), personalised with the demo identity")
    cards.add_argument("--reader", action="append", default=[], metavar="NAME",
                       help="PC/SC reader (repeat for a pool of cards)")
    cards.add_argument("--pin", help=f"the identity's PIN (else ${PIN_ENV}, else a prompt; demo cards: {DEMO_PIN})")
    cards.add_argument("--identity", default=DEMO_IDENTITY, help="identity name in the card")
    cards.add_argument("--export-keys", action="store_true",
                       help="simulated cards: personalise with a policy that allows tandem mode")
    servers = parser.add_argument_group("servers")
    servers.add_argument("--bind", action="extend", type=bind_addresses, metavar="ADDR[,ADDR...]",
                         help="addresses to listen on, repeatable or comma-separated (default: 127.0.0.1 and ::1; "
                              "0.0.0.0 = all IPv4, :: = all IPv6 and IPv4)")
    servers.add_argument("--tls-echo", type=int, metavar="PORT", help="TLS echo server")
    servers.add_argument("--https", type=int, metavar="PORT", help="HTTPS server")
    servers.add_argument("--coaps-tcp", type=int, metavar="PORT", help="CoAP over TLS (RFC 8323)")
    servers.add_argument("--record-layer", choices=("card", "host"), default="card",
                         help="who protects records after the handshake (host = tandem mode)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--handshake-timeout", type=float, default=15.0, metavar="S")
    limits.add_argument("--idle-timeout", type=float, default=30.0, metavar="S")
    limits.add_argument("--backlog", type=int, default=16, help="connections waiting for a card")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def resolve_pin(args: argparse.Namespace) -> str:
    if args.pin:
        return str(args.pin)
    if os.environ.get(PIN_ENV):
        return os.environ[PIN_ENV]
    if args.sim:
        return DEMO_PIN
    if sys.stdin.isatty():
        return getpass.getpass(f"PIN of identity {args.identity!r}: ")
    raise CardOpenError(f"no PIN: give --pin, set {PIN_ENV}, or run in a terminal")


async def serve(args: argparse.Namespace, slots: list[CardSlot], subject: str) -> None:
    timeouts = Timeouts(handshake=args.handshake_timeout, idle=args.idle_timeout)
    tandem = TlsTandem(slots, identity=args.identity, record_mode=args.record_layer, timeouts=timeouts,
                       identity_subject=subject)
    listeners = []
    apps = application_servers(args, tandem)
    if not apps:
        raise CardOpenError("no server to run: give --tls-echo, --https or --coaps-tcp")
    for name, port, app in apps:
        server = ServerTLS(tandem, GenericServer(app), backlog=args.backlog, name=name)
        for address in listen_addresses(args.bind):   # one at a time, to name the one that fails
            try:
                listener = await server.start(address, port)
            except OSError as exc:
                if args.bind is None and address == "::1" and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    log.warning("%s: no IPv6 loopback here (%s): IPv4 only", name, listen_error(exc))
                    continue
                raise CardOpenError(f"cannot listen on {endpoint(address, port)}: {listen_error(exc)}") from None
            listeners.append(listener)
            for sock in listener.sockets:
                log.info("%s listening on %s (record layer in the %s)", name, endpoint(*sock.getsockname()[:2]),
                         args.record_layer)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for listener in listeners:
        listener.close()


def application_servers(args: argparse.Namespace, tandem: TlsTandem) -> list[tuple[str, int, Application]]:
    apps: list[tuple[str, int, Application]] = []
    if args.tls_echo:
        apps.append(("tls-echo", args.tls_echo, echo_application))
    if args.https:
        from host.apps.https import https_application
        apps.append(("https", args.https, https_application(tandem)))
    if args.coaps_tcp:
        from host.apps.coap_tcp import coap_tcp_application
        apps.append(("coaps+tcp", args.coaps_tcp, coap_tcp_application(tandem)))
    return apps


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.sim and not args.reader:
        print("error: say which cards: --sim [N] or --reader NAME", file=sys.stderr)
        return 2
    try:
        pin = resolve_pin(args)
        with open_cards(sim=args.sim, readers=args.reader) as cards:
            if args.sim:
                personalise_simulated(cards, IdentitySpec(args.identity, pin, export_keys=args.export_keys))
            slots = []
            for i, card in enumerate(cards):
                card.unlock(args.identity, pin)
                slots.append(CardSlot(f"{i}:{card.name}", card))
            subject = cards[0].certificate_subject(cards[0].slot or 0)
            log.info("identity %r: %s, PIN verified on %d card(s)", args.identity, subject, len(cards))
            try:
                asyncio.run(serve(args, slots, subject))
            finally:
                for slot in slots:
                    slot.shutdown()
    except CardOpenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
