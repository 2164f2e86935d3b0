"""`python -m host.server`: TLS servers whose handshake runs in the card.

    python -m host.server --sim --tls-echo 8444
    python -m host.server --reader "Virtual PCD 00 00" --pin 1234 --https 8443 --coaps-tcp 5684
    python -m host.server --sim 2 --sim-speed "NXP JCOP4 J3R180" --https 8443   # at a real card's pace

Settings the cards would refuse later are refused at start, in one sentence that names the fix.
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
from collections.abc import Callable

from host.apps.echo import echo_application
from host.card.commands import CardOpenError, SeTlsCard, open_cards
from host.card.cost_model import MissingCost
from host.card.errors import CardRefusedError
from host.card.numbers import Policy
from host.card.sim_speed import paced_simulator
from host.iso7816.channel import Channel, ChannelError
from host.logs import RateLimit
from host.logs import setup as setup_logging
from host.provision import DEMO_IDENTITY, DEMO_PIN, IdentitySpec, personalise_simulated
from host.se_tls import Admission, Application, CardSlot, GenericServer, ServerTLS, Timeouts, TlsTandem

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


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number above zero."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above zero")
        return value
    return parse


def tcp_port(text: str) -> int:
    """A TCP port for argparse: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def card_count(text: str) -> int:
    """How many simulated cards, for argparse: at least 1."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of cards") from None
    if count < 1:
        raise argparse.ArgumentTypeError("--sim takes at least 1 card")
    return count


def psk_pair(text: str) -> tuple[bytes, bytes]:
    """`IDENTITY:HEXKEY` (argparse type): an identity of 1-32 bytes and a key of 16-63 bytes."""
    identity, _, key = text.partition(":")
    try:
        value = bytes.fromhex(key)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the key after ':' must be hex, e.g. client1:00112233...") from None
    if not 1 <= len(identity.encode()) <= 32 or not 16 <= len(value) <= 63:
        raise argparse.ArgumentTypeError(f"{text!r}: give IDENTITY (1-32 bytes):KEY (16-63 bytes in hex)")
    return identity.encode(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m host.server",
                                     description="TLS servers whose handshake runs in a Java Card secure element.")
    cards = parser.add_argument_group("cards")
    cards.add_argument("--sim", nargs="?", type=card_count, const=1, default=0, metavar="N",
                       help="start N simulated cards (jcardsim), personalised with the demo identity")
    cards.add_argument("--reader", action="append", default=[], metavar="NAME",
                       help="PC/SC reader (repeat for a pool of cards)")
    cards.add_argument("--pin", help=f"the identity's PIN (else ${PIN_ENV}, else a prompt; demo cards: {DEMO_PIN})")
    cards.add_argument("--identity", default=DEMO_IDENTITY, help="identity name in the card")
    cards.add_argument("--export-keys", action="store_true",
                       help="simulated cards: personalise with a policy that allows tandem mode")
    cards.add_argument("--sim-psk", action="append", type=psk_pair, default=[], metavar="IDENTITY:HEXKEY",
                       help="simulated cards: store this pre-shared key (repeatable; PSK suites C0A8, C037)")
    cards.add_argument("--sim-speed", metavar="ROW",
                       help="simulated cards answer at the modeled speed of this card row of "
                            "bench/card-op-costs.csv (e.g. \"NXP JCOP4 J3R180\")")
    servers = parser.add_argument_group("servers")
    servers.add_argument("--bind", action="extend", type=bind_addresses, metavar="ADDR[,ADDR...]",
                         help="addresses to listen on, repeatable or comma-separated (default: 127.0.0.1 and ::1; "
                              "0.0.0.0 = all IPv4, :: = all IPv6 and IPv4)")
    servers.add_argument("--tls-echo", type=tcp_port, metavar="PORT", help="TLS echo server")
    servers.add_argument("--https", type=tcp_port, metavar="PORT", help="HTTPS server")
    servers.add_argument("--coaps-tcp", type=tcp_port, metavar="PORT", help="CoAP over TLS (RFC 8323)")
    servers.add_argument("--record-layer", choices=("card", "host"), default="card",
                         help="who protects records after the handshake (host = tandem mode)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--hello-timeout", type=positive(float), default=5.0, metavar="S",
                        help="time a connection has to send its ClientHello; no card is taken before it")
    limits.add_argument("--per-address", type=positive(int), default=32, metavar="N",
                        help="connections per client address still sending their ClientHello (past it the "
                             "oldest is closed)")
    limits.add_argument("--handshake-timeout", type=positive(float), default=15.0, metavar="S",
                        help="time a handshake may hold a card")
    limits.add_argument("--idle-timeout", type=positive(float), default=30.0, metavar="S",
                        help="time a session may stay silent, or leave what is sent unread")
    limits.add_argument("--backlog", type=positive(int), default=16,
                        help="connections with a ClientHello waiting for a card")
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


def check_identity(card: SeTlsCard, args: argparse.Namespace) -> None:
    """Refuses, in one sentence, a setting this card would refuse once clients come (the identity
    is unlocked already: key, chain and PIN are checked)."""
    status = card.status(card.slot or 0)
    if args.record_layer == "host" and not status.policy & Policy.EXPORT_KEYS:
        fix = "add --export-keys" if args.sim else "allow it with python -m host.provision policy --export-keys yes"
        raise CardOpenError(f"--record-layer host needs the session keys, and the policy of identity "
                            f"{args.identity!r} on card {card.name} does not allow their export: {fix}, "
                            f"or use --record-layer card")
    if not status.pin_verified:
        raise CardOpenError(f"the PIN of identity {args.identity!r} on card {card.name} is not verified")


def simulator_layer(args: argparse.Namespace) -> Callable[[Channel], Channel] | None:
    if not args.sim_speed:
        return None
    if not args.sim:
        raise CardOpenError("--sim-speed paces simulated cards: give --sim as well")
    try:
        return paced_simulator(args.sim_speed)
    except MissingCost as exc:
        raise CardOpenError(f"--sim-speed: {exc}") from None


async def flush_logs(limit: RateLimit) -> None:
    """The rate limit's summaries, also when the flood has stopped."""
    while True:
        await asyncio.sleep(limit.interval)
        limit.flush()


async def serve(args: argparse.Namespace, slots: list[CardSlot], subject: str,
                limit: RateLimit | None = None) -> None:
    timeouts = Timeouts(handshake=args.handshake_timeout, idle=args.idle_timeout, hello=args.hello_timeout)
    tandem = TlsTandem(slots, identity=args.identity, record_mode=args.record_layer, timeouts=timeouts,
                       identity_subject=subject)
    admission: Admission[asyncio.StreamWriter] = Admission(per_address=args.per_address)
    listeners = []
    apps = application_servers(args, tandem)
    if not apps:
        raise CardOpenError("no server to run: give --tls-echo, --https or --coaps-tcp")
    for name, port, app in apps:
        server = ServerTLS(tandem, GenericServer(app), backlog=args.backlog, name=name, admission=admission)
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
    if limit is not None:
        flushing = asyncio.ensure_future(flush_logs(limit))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for listener in listeners:
        listener.close()
    if limit is not None:
        flushing.cancel()
        limit.flush(force=True)


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
    limit = setup_logging(args.verbose)
    if not args.sim and not args.reader:
        print("error: say which cards: --sim [N] or --reader NAME", file=sys.stderr)
        return 2
    try:
        pin = resolve_pin(args)
        with open_cards(sim=args.sim, readers=args.reader, sim_layer=simulator_layer(args)) as cards:
            if args.sim:
                personalise_simulated(cards, IdentitySpec(args.identity, pin, export_keys=args.export_keys,
                                                          psks=tuple(args.sim_psk)))
            slots = []
            for i, card in enumerate(cards):
                card.unlock(args.identity, pin)
                check_identity(card, args)
                slots.append(CardSlot(f"{i}:{card.name}", card))
            subject = cards[0].certificate_subject(cards[0].slot or 0)
            log.info("identity %r: %s, PIN verified on %d card(s)", args.identity, subject, len(cards))
            try:
                asyncio.run(serve(args, slots, subject, limit))
            finally:
                for slot in slots:
                    slot.shutdown()
    except (CardOpenError, CardRefusedError, ChannelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
