"""`python -m host.server`: TLS servers whose handshake runs in the card.

    python -m host.server --sim --tls-echo 8444
    python -m host.server --reader "Virtual PCD 00 00" --pin 1234 --https 8443 --coaps-tcp 5684
    python -m host.server --sim --coaps                                          # CoAP over DTLS, UDP 5684
    python -m host.server --sim 2 --sim-speed "NXP JCOP4 J3R180" --https 8443   # at a real card's pace
    python -m host.server --config /etc/setls/setls.toml [--check]               # as a service

Settings the cards would refuse later are refused at start, in one sentence that names the fix.
The settings come from a `ServerConfig` (host.service.config): the built-in defaults, then the
TOML file of `--config`, then every option given on the command line. Under systemd (Type=notify)
the server sends READY=1 once it listens, the cards' state in STATUS=, and WATCHDOG=1 pings
(host.service.notify). Exit status: 0 stopped, 2 usage or environment, 77 the PIN was refused or
not tried (host.service.pin: the service never blocks a PIN), 78 a wrong configuration file.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from host.apps.echo import dtls_echo_application, echo_application
from host.card.commands import CardOpenError, SeTlsCard, open_cards
from host.card.cost_model import MissingCost
from host.card.errors import CardRefusedError, describe
from host.card.keeper import ChannelKeeper, ReaderKeeper
from host.card.numbers import Policy
from host.card.sim_speed import paced_simulator
from host.dtls import DtlsApplication, DtlsConfig, DtlsServer
from host.iso7816.channel import Channel, ChannelError
from host.logs import RateLimit
from host.logs import setup as setup_logging
from host.metrics import PoolMetrics, serve_metrics
from host.provision import DEFAULT_SUITES, DEMO_PIN, IdentitySpec, parse_suites, personalise_simulated
from host.se_tls import (
    Admission,
    Application,
    CardFacts,
    CardSlot,
    CardSupervisor,
    GenericServer,
    ServerTLS,
    Timeouts,
    TlsTandem,
)
from host.service import config as configuration
from host.service.config import ConfigError, ServerConfig
from host.service.notify import Liveness, Notifier, watchdog, watchdog_interval
from host.service.pin import (
    EXIT_CONFIG,
    EXIT_PIN_REFUSED,
    PIN_ENV,
    PinRefusal,
    RefusedPins,
    check_pin_length,
    describe_pin_source,
    find_pin,
    read_pin_file,
    state_directory,
    unlock,
)

log = logging.getLogger("host.server")
DEFAULT_BIND = ("127.0.0.1", "::1")   # both loopbacks: clients resolve localhost to either first
WILDCARDS = {"0.0.0.0": 4, "::": 6}
COAPS_PORT = 5684   # RFC 7252 12.7: coaps over UDP


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
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number (give seconds or a count above zero)")
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


def simulated_suites(config: ServerConfig) -> tuple[int, ...]:
    """The simulated cards' suites: cards.suites (checked by check_config), else the AEAD suites."""
    return suite_list(config.cards.suites) if config.cards.suites is not None else DEFAULT_SUITES


def suite_list(text: str) -> tuple[int, ...]:
    """argparse type of --suites: `c02b,c0ac` or OpenSSL names, at least one."""
    try:
        suites = parse_suites(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: give hex codes or OpenSSL names, e.g. c02b,c0ac") from None
    if not suites:
        raise argparse.ArgumentTypeError("give at least one suite, e.g. c02b")
    return suites


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
    """The options; an option left out is None, so that the configuration file's value stands."""
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(prog="python -m host.server",
                                     description="TLS servers whose handshake runs in a Java Card secure element.",
                                     epilog="Every option overrides the --config file. Exit status: 0 stopped, "
                                            "2 usage or environment, 77 PIN refused or not tried (the server "
                                            "never blocks a PIN), 78 wrong configuration file.")
    parser.add_argument("--config", metavar="FILE", help="a TOML configuration (packaging/setls.toml)")
    parser.add_argument("--check", action="store_true",
                        help="check the configuration and print the effective one (PIN redacted), then exit")
    cards = parser.add_argument_group("cards")
    cards.add_argument("--sim", nargs="?", type=card_count, const=1, metavar="N",
                       help="start N simulated cards (jcardsim), personalised with the demo identity")
    cards.add_argument("--reader", action="append", metavar="NAME",
                       help="PC/SC reader (repeat for a pool of cards)")
    cards.add_argument("--pin", help=f"the identity's PIN (shown in the process list: else the systemd credential "
                                     f"'pin', cards.pin_file, ${PIN_ENV}, a prompt; demo cards: {DEMO_PIN})")
    cards.add_argument("--identity", help=f"identity name in the card (default {defaults.cards.identity})")
    cards.add_argument("--export-keys", action="store_const", const=True,
                       help="simulated cards: personalise with a policy that allows tandem mode")
    cards.add_argument("--client-auth", choices=("none", "optional", "required"),
                       help="simulated cards: ask clients for a certificate of the demo CA (build/demo/ca.pem; "
                            "python -m host.provision demo-ca client NAME issues one); real cards: the policy "
                            "set with python -m host.provision policy --client-auth")
    cards.add_argument("--no-client-dates", dest="client_dates", action="store_const", const=False,
                       help="simulated cards: do not check client certificates' dates")
    cards.add_argument("--suites", metavar="LIST",
                       help="simulated cards: the identity's cipher suites, server's order, e.g. c02b,c0ac,c023 "
                            "(default: the AEAD suites GCM, CCM, CCM_8; CBC-SHA256 only if listed)")
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
    servers.add_argument("--dtls-echo", type=tcp_port, metavar="PORT", help="DTLS 1.2 echo server (UDP)")
    servers.add_argument("--dtls-mtu", type=positive(int), metavar="BYTES",
                         help="bytes per datagram the DTLS server fragments its flights to (default 1200)")
    servers.add_argument("--https", type=tcp_port, metavar="PORT", help="HTTPS server")
    servers.add_argument("--coaps-tcp", type=tcp_port, metavar="PORT", help="CoAP over TLS (RFC 8323)")
    servers.add_argument("--coaps", type=tcp_port, nargs="?", const=COAPS_PORT, metavar="PORT",
                         help=f"CoAP over DTLS on UDP (RFC 7252; default port {COAPS_PORT}): the same resources, "
                              f"Observe on /sensors/temperature")
    servers.add_argument("--record-layer", choices=("card", "host"),
                         help="who protects records after the handshake (host = tandem mode; default card)")
    servers.add_argument("--metrics-port", type=tcp_port, metavar="PORT",
                         help="the Prometheus endpoint's port (on metrics.bind, 127.0.0.1 by default)")
    servers.add_argument("--metrics-bind", metavar="ADDR",
                         help=f"the Prometheus endpoint's address (default {defaults.metrics.bind}: this machine "
                              f"only)")
    limits = parser.add_argument_group("limits")
    lim = defaults.limits
    limits.add_argument("--hello-timeout", type=positive(float), metavar="S",
                        help=f"time a connection has to send its ClientHello; no card is taken before it "
                             f"(default {lim.hello_timeout:g})")
    limits.add_argument("--per-address", type=positive(int), metavar="N",
                        help=f"connections per client address still sending their ClientHello (past it the "
                             f"oldest is closed; default {lim.per_address})")
    limits.add_argument("--per-address-handshakes", type=positive(int), metavar="N",
                        help=f"connections per client address with a ClientHello that wait for a card or are "
                             f"in their handshake (past it a newcomer is refused with an alert; "
                             f"default {lim.per_address_handshakes})")
    limits.add_argument("--handshake-timeout", type=positive(float), metavar="S",
                        help=f"time a handshake may hold a card (default {lim.handshake_timeout:g})")
    limits.add_argument("--idle-timeout", type=positive(float), metavar="S",
                        help=f"time a session may stay silent, or leave what is sent unread "
                             f"(default {lim.idle_timeout:g})")
    limits.add_argument("--backlog", type=positive(int),
                        help=f"connections with a ClientHello waiting for a card (default {lim.backlog})")
    cards.add_argument("--card-check", type=positive(float), metavar="S",
                       help=f"an idle card is probed, a lost one reopened, this often "
                            f"(default {defaults.cards.check_interval:g})")
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-format", choices=("text", "json"),
                      help="text (default): one line per connection and event; json: one JSON object per line")
    logs.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return parser


# The options that override a key of the configuration file.
OVERRIDES = {
    "sim": "cards.sim", "reader": "cards.readers", "identity": "cards.identity", "export_keys": "cards.export_keys",
    "client_auth": "cards.client_auth", "client_dates": "cards.client_dates", "suites": "cards.suites",
    "sim_speed": "cards.sim_speed", "bind": "servers.bind", "tls_echo": "servers.tls_echo", "https": "servers.https",
    "dtls_echo": "servers.dtls_echo", "dtls_mtu": "servers.dtls_mtu",
    "coaps_tcp": "servers.coaps_tcp", "coaps": "servers.coaps", "record_layer": "servers.record_layer",
    "metrics_port": "metrics.port",
    "metrics_bind": "metrics.bind", "card_check": "cards.check_interval",
    "hello_timeout": "limits.hello_timeout", "per_address": "limits.per_address",
    "per_address_handshakes": "limits.per_address_handshakes",
    "handshake_timeout": "limits.handshake_timeout", "idle_timeout": "limits.idle_timeout",
    "backlog": "limits.backlog", "log_format": "logging.format",
}


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The defaults, then the file of --config, then each option given (ConfigError for the file)."""
    config = configuration.read(args.config) if args.config else ServerConfig()
    for option, dotted in OVERRIDES.items():
        value = getattr(args, option)
        if value is not None:
            config.set(dotted, value)
    if args.verbose:
        config.logging.level = "debug"
    # PSKs are secrets: from the command line only (simulated cards), never from the file.
    config.cards.sim_psks = list(args.sim_psk)
    return config


def check_config(config: ServerConfig, cli_pin: str | None) -> str:
    """Refuses, in one sentence, a configuration that cannot run (ConfigError); returns where the
    PIN will come from. Reads no card."""
    cards = config.cards
    where = f" in {config.source}" if config.source else ""
    if not cards.sim and not cards.readers:
        raise ConfigError(f"say which cards: --sim [N] or --reader NAME (cards.sim or cards.readers{where})")
    servers = config.servers
    if all(port is None for port in (servers.https, servers.coaps_tcp, servers.coaps, servers.tls_echo,
                                     servers.dtls_echo)):
        raise ConfigError(f"no server to run: give --tls-echo, --dtls-echo, --https, --coaps-tcp or --coaps "
                          f"(servers.tls_echo, servers.dtls_echo, servers.https, servers.coaps_tcp or "
                          f"servers.coaps{where})")
    if servers.dtls_mtu < 256:
        raise ConfigError(f"--dtls-mtu {servers.dtls_mtu} is below 256 bytes: give 256 or more")
    if cards.sim_speed and not cards.sim:
        raise ConfigError("--sim-speed paces simulated cards: give --sim as well")
    if cards.suites is not None:
        try:
            suite_list(cards.suites)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"--suites (cards.suites{where}): {exc}") from None
        if not cards.sim:
            raise ConfigError("--suites sets up simulated cards; a real card keeps its own: "
                              "python -m host.provision policy --suites ... --reader NAME")
    if cards.sim_psks and not cards.sim:
        raise ConfigError("--sim-psk stores PSKs in simulated cards: give --sim as well (a real card's PSKs: "
                          "python -m host.provision set-psk ... --reader NAME)")
    if not cards.sim and (cards.client_auth != "none" or not cards.client_dates):
        raise ConfigError("--client-auth and --no-client-dates set up simulated cards; a real card keeps its own "
                          "policy: python -m host.provision policy --client-auth ... --reader NAME")
    for address in config.servers.bind or []:
        try:
            bind_addresses(address)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"servers.bind{where}: {exc}") from None
    if cli_pin:
        try:
            check_pin_length(cli_pin, "--pin")
        except CardOpenError as exc:
            raise ConfigError(str(exc)) from None
    elif cards.pin_file:
        try:
            read_pin_file(Path(cards.pin_file), "file")
        except CardOpenError as exc:
            raise ConfigError(f"cards.pin_file{where}: {exc}") from None
    return describe_pin_source(cli_pin, cards.pin_file, bool(cards.sim))


def check_identity(card: SeTlsCard, config: ServerConfig) -> None:
    """Refuses, in one sentence, a setting this card would refuse once clients come (the identity
    is unlocked already: key, chain and PIN are checked)."""
    status = card.status(card.slot or 0)
    identity = config.cards.identity
    if config.servers.record_layer == "host" and not status.policy & Policy.EXPORT_KEYS:
        fix = ("add --export-keys" if config.cards.sim
               else "allow it with python -m host.provision policy --export-keys yes")
        raise CardOpenError(f"--record-layer host needs the session keys, and the policy of identity "
                            f"{identity!r} on card {card.name} does not allow their export: {fix}, "
                            f"or use --record-layer card")
    if not status.pin_verified:
        raise CardOpenError(f"the PIN of identity {identity!r} on card {card.name} is not verified")


def guard(identity: str, pin: str, refused: RefusedPins) -> Callable[[SeTlsCard, bytes | None], bytes]:
    """The PIN guard of host.service.pin bound to the identity and PIN, as the keepers call it."""
    def guarded(card: SeTlsCard, expected: bytes | None) -> bytes:
        return unlock(card, identity, pin, refused, expected_key=expected)
    return guarded


def card_keeper(card: SeTlsCard, identity: str, pin: str, refused: RefusedPins, key: bytes) -> ChannelKeeper:
    """What probes the unlocked `card` and reopens it after a removal or reset (host.card.keeper),
    unlocking it with the PIN guard, for the identity key `key` only."""
    reader = card.session.channel.reader
    if reader:
        return ReaderKeeper(reader, guard(identity, pin, refused), key, final=(PinRefusal,))
    return ChannelKeeper(guard(identity, pin, refused), key, final=(PinRefusal,))


def simulator_layer(config: ServerConfig) -> Callable[[Channel], Channel] | None:
    if not config.cards.sim_speed:
        return None
    try:
        return paced_simulator(config.cards.sim_speed)
    except MissingCost as exc:
        raise CardOpenError(f"--sim-speed: {exc}") from None


def cards_status(slots: list[CardSlot], missing: dict[str, str]) -> str:
    """The cards' state for STATUS= and the log: how many serve, and why the others do not."""
    serving = [slot for slot in slots if not slot.lost]
    total = len(slots) + len(missing)
    reasons = [f"{slot.name} lost: {slot.lost}" for slot in slots if slot.lost]
    reasons += [f"{name}: {reason}" for name, reason in missing.items()]
    text = f"{len(serving)} of {total} card(s) serving"
    if not serving:
        text += ", no card: clients are refused"
    return text + ("; " + "; ".join(reasons) if reasons else "")


async def flush_logs(limit: RateLimit) -> None:
    """The rate limit's summaries, also when the flood has stopped."""
    while True:
        await asyncio.sleep(limit.interval)
        limit.flush()


async def serve(config: ServerConfig, slots: list[CardSlot], subject: str, limit: RateLimit | None = None,
                missing: dict[str, str] | None = None, notifier: Notifier | None = None,
                liveness: Liveness | None = None) -> None:
    """Listens, says READY=1 (and prints `ready`), pings the watchdog, and serves until SIGINT or
    SIGTERM. `missing`: cards that are not there (name -> why), for STATUS=; `liveness`: the
    checks the watchdog asks before each ping (the card supervisor registers its own)."""
    missing = missing or {}
    notifier = notifier or Notifier({})
    liveness = liveness or Liveness()
    limits = config.limits
    record_layer = config.servers.record_layer
    timeouts = Timeouts(handshake=limits.handshake_timeout, idle=limits.idle_timeout, hello=limits.hello_timeout)
    tandem = TlsTandem(slots, identity=config.cards.identity, record_mode=record_layer, timeouts=timeouts,
                       identity_subject=subject)
    metrics = PoolMetrics()
    metrics.attach(tandem)
    metrics_server = None
    if config.metrics.port is not None:
        try:
            metrics_server, _ = serve_metrics(metrics, config.metrics.port, config.metrics.bind)
        except OSError as exc:
            raise CardOpenError(f"cannot serve metrics on {endpoint(config.metrics.bind, config.metrics.port)}: "
                                f"{listen_error(exc)}") from None
    supervisor = CardSupervisor(tandem, interval=config.cards.check_interval)
    supervising = asyncio.ensure_future(supervisor.run())
    liveness.register("card supervisor", supervisor.stalled)
    admission: Admission[asyncio.StreamWriter] = Admission(
        per_address=limits.per_address, per_address_handshakes=limits.per_address_handshakes)
    listeners = []
    apps = application_servers(config, tandem)
    dtls_servers = await start_dtls(config, tandem)
    if not apps and not dtls_servers:
        raise CardOpenError("no server to run: give --tls-echo, --dtls-echo, --https, --coaps-tcp or --coaps")
    bind = config.servers.bind
    endpoints = []
    for name, port, app in apps:
        server = ServerTLS(tandem, GenericServer(app), backlog=limits.backlog, name=name, admission=admission)
        for address in listen_addresses(bind):   # one at a time, to name the one that fails
            try:
                listener = await server.start(address, port)
            except OSError as exc:
                if bind is None and address == "::1" and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    log.warning("%s: no IPv6 loopback here (%s): IPv4 only", name, listen_error(exc))
                    continue
                raise CardOpenError(f"cannot listen on {endpoint(address, port)}: {listen_error(exc)}") from None
            listeners.append(listener)
            for sock in listener.sockets:
                log.info("%s listening on %s (record layer in the %s)", name, endpoint(*sock.getsockname()[:2]),
                         record_layer)
        endpoints.append(f"{name} :{port}")
    endpoints += [f"{name} udp:{server.port}" for name, server in dtls_servers]
    tasks = []
    if limit is not None:
        tasks.append(asyncio.ensure_future(flush_logs(limit)))

    def status() -> str:
        return f"{', '.join(endpoints)}; {cards_status(slots, missing)}"

    log.info("cards: %s", cards_status(slots, missing))
    notifier.ready(status())
    log.info("ready: %s", status())   # a log record too (JSON with --log-format json)
    print("ready", flush=True)        # stdout: what scripts and the tests wait for
    interval = watchdog_interval()
    if interval is not None:
        tasks.append(asyncio.ensure_future(watchdog(notifier, interval, liveness)))
    if notifier.enabled:
        tasks.append(asyncio.ensure_future(report_status(notifier, status, interval or STATUS_INTERVAL)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    notifier.stopping()
    supervising.cancel()
    if metrics_server is not None:
        metrics_server.shutdown()
    for listener in listeners:
        listener.close()
    for _, dtls_server in dtls_servers:
        await dtls_server.close()
    for task in tasks:
        task.cancel()
    if limit is not None:
        limit.flush(force=True)


STATUS_INTERVAL = 5.0   # seconds between STATUS= checks without a watchdog


async def start_dtls(config: ServerConfig, tandem: TlsTandem) -> list[tuple[str, DtlsServer]]:
    """The DTLS servers (UDP), with their names: one per bind address for each of
    `datagram_servers()`, fragmenting to servers.dtls_mtu, handshakes bounded by
    limits.handshake_timeout."""
    bind = config.servers.bind
    started = []
    for name, port, application in datagram_servers(config):
        for address in listen_addresses(bind):
            server = DtlsServer(tandem, application, DtlsConfig(
                mtu=config.servers.dtls_mtu, idle=config.limits.idle_timeout,
                handshake=config.limits.handshake_timeout))
            try:
                await server.start(address, port)
            except OSError as exc:
                if bind is None and address == "::1" and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    log.warning("%s: no IPv6 loopback here (%s): IPv4 only", name, listen_error(exc))
                    continue
                raise CardOpenError(f"cannot listen on udp {endpoint(address, port)}: {listen_error(exc)}") from None
            log.info("%s listening on udp %s (MTU %d, record layer in the %s)", name, endpoint(address, server.port),
                     config.servers.dtls_mtu, config.servers.record_layer)
            started.append((name, server))
    return started


def datagram_servers(config: ServerConfig) -> list[tuple[str, int, DtlsApplication]]:
    """The servers on UDP: the DTLS echo (--dtls-echo) and CoAP over DTLS (--coaps, RFC 7252 9)."""
    servers: list[tuple[str, int, DtlsApplication]] = []
    if config.servers.dtls_echo is not None:
        servers.append(("dtls-echo", config.servers.dtls_echo, dtls_echo_application))
    if config.servers.coaps is not None:
        from host.apps.coap_udp import coap_udp_application
        servers.append(("coaps", config.servers.coaps, coap_udp_application()))
    return servers


async def report_status(notifier: Notifier, status: Callable[[], str], interval: float) -> None:
    """STATUS= whenever the cards' state changed (a lost card), checked every `interval` seconds."""
    while True:
        await asyncio.sleep(interval)
        notifier.status(status())


def application_servers(config: ServerConfig, tandem: TlsTandem) -> list[tuple[str, int, Application]]:
    apps: list[tuple[str, int, Application]] = []
    servers = config.servers
    if servers.tls_echo is not None:
        apps.append(("tls-echo", servers.tls_echo, echo_application))
    if servers.https is not None:
        from host.apps.https import https_application
        apps.append(("https", servers.https, https_application(tandem)))
    if servers.coaps_tcp is not None:
        from host.apps.coap_tcp import coap_tcp_application
        apps.append(("coaps+tcp", servers.coaps_tcp, coap_tcp_application(tandem)))
    return apps


def open_pool(stack: contextlib.ExitStack, config: ServerConfig) -> tuple[list[SeTlsCard], dict[str, str]]:
    """Opens the cards: the simulated ones together, each reader on its own; with
    cards.missing = "wait" a reader without its card is left out (name -> why) instead of refused."""
    cards: list[SeTlsCard] = []
    missing: dict[str, str] = {}
    if config.cards.sim:
        cards += stack.enter_context(open_cards(sim=config.cards.sim, sim_layer=simulator_layer(config)))
    for reader in config.cards.readers:
        try:
            cards += stack.enter_context(open_cards(readers=[reader]))
        except CardOpenError as exc:
            if config.cards.missing != "wait":
                raise
            log.warning("card in %r not there (%s): starting without it", reader, exc)
            missing[reader] = str(exc)
    return cards, missing


def start_error(exc: Exception) -> str:
    """A failure at start-up as one sentence: a card's refusal names the command and the status
    word's meaning in words ("the card refused INITIALIZE: wrong length (status word 6700, docs/apdu.md)"),
    not the raw "INITIALIZE: card answered 6700 WRONG_LENGTH: ..."."""
    if isinstance(exc, CardRefusedError) and exc.sw is not None:
        command = str(exc).split(":", 1)[0]
        meaning = describe(exc.sw).split(": ", 1)[-1]
        return f"the card refused {command}: {meaning} (status word {exc.sw:04X}, see docs/apdu.md)"
    return str(exc)


def run(config: ServerConfig, cli_pin: str | None, limit: RateLimit, notifier: Notifier) -> None:
    """Opens and unlocks the cards, then serves (the exceptions are main()'s to answer)."""
    simulated = bool(config.cards.sim)
    identity = config.cards.identity
    with contextlib.ExitStack() as stack:
        cards, missing = open_pool(stack, config)
        pin = find_pin(cli_pin, config.cards.pin_file, simulated, DEMO_PIN, identity) if cards else None
        if pin is None and missing:   # a card may come later: its PIN is needed then (no prompt now)
            with contextlib.suppress(CardOpenError):
                pin = find_pin(cli_pin, config.cards.pin_file, simulated, DEMO_PIN, identity, prompt=False)
        if pin is not None:
            log.info("PIN of identity %r from %s", identity, pin.source)
        if simulated and pin is not None:
            personalise_simulated(cards[:config.cards.sim],   # open_pool opens them first
                                  IdentitySpec(identity, pin.value, export_keys=config.cards.export_keys,
                                               client_auth=config.cards.client_auth,
                                               client_dates=config.cards.client_dates,
                                               suites=simulated_suites(config),
                                               psks=tuple(config.cards.sim_psks)))
        # Simulated cards are new each run: their refusals are kept in memory only.
        refused = RefusedPins(state_directory(config.service.state_directory) if config.cards.readers else None)
        slots = []
        for i, card in enumerate(cards):
            assert pin is not None
            key = unlock(card, identity, pin.value, refused)
            check_identity(card, config)
            keeper = card_keeper(card, identity, pin.value, refused, key)
            slots.append(CardSlot(f"{i}:{card.name}", card, keeper, CardFacts(**keeper.facts(card))))
        if pin is not None:   # a reader whose card is not there yet: in the pool as lost, its card awaited
            for reader, why in list(missing.items()):
                keeper = ReaderKeeper(reader, guard(identity, pin.value, refused), None, final=(PinRefusal,))
                slots.append(CardSlot.absent(f"{len(slots)}:{reader}", keeper, why, CardFacts(reader=reader)))
                del missing[reader]
        subject = cards[0].certificate_subject(cards[0].slot or 0) if cards else ""
        if cards:
            log.info("identity %r: %s, PIN verified on %d card(s)", identity, subject, len(cards))
        try:
            asyncio.run(serve(config, slots, subject, limit, missing, notifier))
        finally:
            for slot in slots:
                slot.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    notifier = Notifier()
    try:
        config = server_config(args)
        pin_source = check_config(config, args.pin)
    except ConfigError as exc:   # a wrong file: 78 (the unit does not restart); a wrong command line: usage, 2
        print(f"error: {exc}", file=sys.stderr)
        notifier.send(STATUS=f"configuration error: {exc}"[:400])
        return EXIT_CONFIG if args.config else 2
    if args.check:
        print(config.render(pin_source), end="")
        print(f"# configuration OK{': ' + config.source if config.source else ''}", file=sys.stderr)
        return 0
    limit = setup_logging(log_format=config.logging.format,
                          level=getattr(logging, config.logging.level.upper()))
    try:
        run(config, args.pin, limit, notifier)
    except PinRefusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        notifier.send(STATUS=str(exc))
        return EXIT_PIN_REFUSED
    except (CardOpenError, CardRefusedError, ChannelError) as exc:
        sentence = start_error(exc)
        print(f"error: {sentence}", file=sys.stderr)
        notifier.send(STATUS=f"error: {sentence}")
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        notifier.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
