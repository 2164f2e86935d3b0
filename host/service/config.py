"""The server's configuration: a TOML file (read with `tomllib`), then the command line over it.

    [cards]     readers = ["Virtual PCD 00 00"] or sim = 1, identity, pin_file, missing = "wait"
    [servers]   bind = ["127.0.0.1", "::1"], https = 8443, coaps_tcp = 5684, coaps = 5684 (UDP),
                tls_echo = 8444, record_layer = "card" | "host"
    [limits]    hello_timeout, per_address, per_address_handshakes, handshake_timeout, idle_timeout, backlog
    [logging]   level = "info" | "debug" | "warning" | "error", format = "text" | "json"
    [metrics]   port, bind (read by the metrics endpoint)
    [service]   state_directory (where refused PINs are remembered; $STATE_DIRECTORY under systemd)

`load(text)` checks every key against `SCHEMA`: an unknown key or a wrong type is a `ConfigError`
naming the dotted key and its line. `tomllib` reports lines only for syntax errors, so
`key_line()` finds a key's line by scanning the source for table headers and assignments.
`ServerConfig.render()` is the effective configuration as TOML, the PIN never in it (the file
cannot hold one: it comes from a systemd credential, a 0600 file, `$SETLS_PIN` or `--pin`).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.provision import DEMO_IDENTITY

DEFAULT_IDENTITY = DEMO_IDENTITY   # "server"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A configuration the server cannot run with; the message names the key, the line and the fix."""


@dataclass(frozen=True)
class Key:
    """One key of the file: its check (returns the value, or raises ValueError saying what it wants)."""

    check: Callable[[Any], Any]
    help: str


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer{_range(low, high)}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be from {low} to {high}" if high is not None else f"must be at least {low}")
        return value
    return check


def _range(low: int, high: int | None) -> str:
    return f" from {low} to {high}" if high is not None else f" of at least {low}"


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number of seconds")
    if not math.isfinite(value):
        raise ValueError("expected a finite number of seconds")
    if value <= 0:
        raise ValueError("must be above zero")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(f'"{c}"' for c in choices))
        return str(value)
    return check


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError('expected a list of strings, e.g. ["a", "b"]')
    return list(value)


def _addresses(value: Any) -> list[str]:
    addresses = _strings(value)
    if not addresses:
        raise ValueError("expected at least one address")
    return [a[1:-1] if a.startswith("[") and a.endswith("]") else a for a in addresses]


def _address(value: Any) -> str:
    text = _text(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f'"{text}" is not an IP address') from None
    return text


PORT = _int(0, 0xFFFF)

SCHEMA: dict[str, dict[str, Key]] = {
    "cards": {
        "readers": Key(_strings, "PC/SC reader names (or the start of a name only one reader has)"),
        "sim": Key(_int(0), "simulated cards (jcardsim), personalised with the demo identity"),
        "identity": Key(_text, "the identity's name in the card"),
        "pin_file": Key(_text, "a file holding the PIN, mode 0600 (systemd: LoadCredential=pin:FILE instead)"),
        "missing": Key(_choice("fail", "wait"), '"wait": start without a card that is absent, "fail": refuse'),
        "export_keys": Key(_bool, "simulated cards: a policy that allows --record-layer host"),
        "client_auth": Key(_choice("none", "optional", "required"),
                           "simulated cards: ask clients for a certificate of the demo CA"),
        "suites": Key(_text, "simulated cards: the identity's cipher suites in the server's order, e.g. \"c02b,c0ac\""),
        "client_dates": Key(_bool, "simulated cards: check client certificates' dates against the host's clock"),
        "sim_speed": Key(_text, "simulated cards answer at the speed of this row of bench/card-op-costs.csv"),
        "check_interval": Key(_seconds, "seconds between probes of an idle card and tries to reopen a lost one"),
    },
    "servers": {
        "bind": Key(_addresses, "addresses to listen on"),
        "https": Key(PORT, "HTTPS port"),
        "coaps_tcp": Key(PORT, "CoAP over TLS port (RFC 8323)"),
        "coaps": Key(PORT, "CoAP over DTLS UDP port (RFC 7252; 5684 is CoAP's)"),
        "tls_echo": Key(PORT, "TLS echo port"),
        "dtls_echo": Key(PORT, "DTLS echo port (UDP, RFC 6347)"),
        "dtls_mtu": Key(_int(256), "bytes per datagram the DTLS server's flights are fragmented to"),
        "record_layer": Key(_choice("card", "host"), "who protects records after the handshake"),
    },
    "limits": {
        "hello_timeout": Key(_seconds, "seconds a connection has to send its ClientHello"),
        "per_address": Key(_int(1), "connections per client address still sending their ClientHello"),
        "per_address_handshakes": Key(_int(1), "connections per client address waiting for a card or in "
                                               "their handshake"),
        "handshake_timeout": Key(_seconds, "seconds a handshake may hold a card"),
        "idle_timeout": Key(_seconds, "seconds a session may stay silent"),
        "backlog": Key(_int(1), "connections with a ClientHello waiting for a card"),
    },
    "logging": {
        "level": Key(_choice(*LOG_LEVELS), "the lowest level logged"),
        "format": Key(_choice("text", "json"), "text: one line per event; json: one JSON object per line"),
    },
    "metrics": {
        "port": Key(PORT, "Prometheus endpoint port (absent: no endpoint)"),
        "bind": Key(_address, "the metrics endpoint's address (default 127.0.0.1)"),
    },
    "service": {
        "state_directory": Key(_text, "where the service remembers PINs a card refused (systemd: StateDirectory=)"),
    },
}

# Keys a person may expect and must not use, with the reason.
FORBIDDEN = {
    "cards.pin": "a PIN does not go in the configuration: use LoadCredential=pin:FILE (systemd), "
                 "cards.pin_file = a 0600 file, or $SETLS_PIN",
}


@dataclass
class CardsConfig:
    readers: list[str] = field(default_factory=list)
    sim: int = 0
    identity: str = DEFAULT_IDENTITY
    pin_file: str | None = None
    missing: str = "fail"
    export_keys: bool = False
    client_auth: str = "none"
    client_dates: bool = True
    suites: str | None = None
    sim_speed: str | None = None
    check_interval: float = 2.0
    # (identity, key) pairs for simulated cards: --sim-psk only (a secret: no key of the file).
    sim_psks: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class ServersConfig:
    bind: list[str] | None = None     # None: both loopbacks (host.server.DEFAULT_BIND)
    https: int | None = None
    coaps_tcp: int | None = None
    coaps: int | None = None          # UDP
    tls_echo: int | None = None
    dtls_echo: int | None = None
    dtls_mtu: int = 1200
    record_layer: str = "card"


@dataclass
class LimitsConfig:
    hello_timeout: float = 5.0
    per_address: int = 32
    per_address_handshakes: int = 8
    handshake_timeout: float = 15.0
    idle_timeout: float = 30.0
    backlog: int = 16


@dataclass
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@dataclass
class MetricsConfig:
    port: int | None = None
    bind: str = "127.0.0.1"


@dataclass
class ServiceConfig:
    state_directory: str | None = None


@dataclass
class ServerConfig:
    """Everything `python -m host.server` runs with (the PIN apart: see host.service.pin)."""

    cards: CardsConfig = field(default_factory=CardsConfig)
    servers: ServersConfig = field(default_factory=ServersConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    source: str | None = None           # the file it was read from

    def set(self, dotted: str, value: Any) -> None:
        """Sets `table.key` (a CLI option over the file); the value is already checked."""
        table, key = dotted.split(".")
        setattr(getattr(self, table), key, value)

    def render(self, pin_source: str | None = None) -> str:
        """The effective configuration as TOML (what `--check` prints); absent values as comments."""
        lines = [f"# effective configuration{' of ' + self.source if self.source else ''}"
                 " (built-in defaults, then the file, then the command line)"]
        for table in SCHEMA:
            lines.append(f"\n[{table}]")
            section = getattr(self, table)
            for key in SCHEMA[table]:
                value = getattr(section, key)
                if value is None:
                    lines.append(f"# {key} = (not set)")
                else:
                    lines.append(f"{key} = {_toml_value(value)}")
            if table == "cards":
                lines.append(f"# PIN: {pin_source or 'none found'} (value redacted)")
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


# -- reading the file ----------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_ASSIGN = re.compile(rf"^\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*=")


def _dotted(text: str) -> str:
    parts = re.findall(r"[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'", text)
    return ".".join(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def key_line(source: str, dotted: str) -> int | None:
    """The line (1-based) where `dotted` (e.g. "servers.https") is assigned or its table opens,
    found by scanning the text (tables, dotted keys, quoted keys; not keys inside inline tables)."""
    table = ""
    header_line = None
    for number, line in enumerate(source.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _dotted(header.group(1))
            if table == dotted:
                header_line = header_line or number
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = _dotted(assign.group(1))
            full = f"{table}.{key}" if table else key
            if full == dotted or dotted.startswith(full + "."):
                return number
    return header_line


def load(text: str, source: str = "<config>") -> ServerConfig:
    """The configuration in TOML `text`; ConfigError naming the key and its line for anything wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    config = ServerConfig(source=source)

    def where(dotted: str) -> str:
        line = key_line(text, dotted)
        return f"{source}:{line}" if line else source

    for table, values in data.items():
        if table not in SCHEMA:
            raise ConfigError(f"{where(table)}: unknown table [{table}] (known: "
                              + ", ".join(f"[{t}]" for t in SCHEMA) + ")")
        if not isinstance(values, dict):
            raise ConfigError(f"{where(table)}: {table} must be a table ([{table}]), not a value")
        for key, value in values.items():
            dotted = f"{table}.{key}"
            if dotted in FORBIDDEN:
                raise ConfigError(f"{where(dotted)}: {dotted}: {FORBIDDEN[dotted]}")
            spec = SCHEMA[table].get(key)
            if spec is None:
                raise ConfigError(f"{where(dotted)}: unknown key {dotted} (keys of [{table}]: "
                                  + ", ".join(SCHEMA[table]) + ")")
            try:
                checked = spec.check(value)
            except ValueError as exc:
                raise ConfigError(f"{where(dotted)}: {dotted}: {exc} ({spec.help}), "
                                  f"not {_shown(value)}") from None
            config.set(dotted, checked)
    return config


def _shown(value: Any) -> str:
    if isinstance(value, bool | int | float | str | list):
        try:
            return _toml_value(value)
        except TypeError:
            pass
    return type(value).__name__


def read(path: str | Path) -> ServerConfig:
    """The configuration in the file at `path` (ConfigError if it cannot be read)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return load(text, str(path))


def fields_of(config: ServerConfig) -> dict[str, Any]:
    """Every `table.key` and its value (for tests and the status page)."""
    return {f"{table}.{f.name}": getattr(getattr(config, table), f.name)
            for table in SCHEMA for f in dataclasses.fields(getattr(config, table))}
