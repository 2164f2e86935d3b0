"""The ISO 7816 channel: one interface, its implementations, and layers stacked on it.

A `Channel` moves raw APDUs: `transmit(command) -> response` (response data + SW1 SW2), `reset()`
(returns the ATR), `atr`, `close()`. Implementations:
  PcscChannel   a PC/SC reader through pyscard (real readers and the pcscd + vpcd virtual reader)
  VpcdChannel   the host plays the vpcd side of the vsmartcard protocol: it listens on a TCP port
                and a virtual card (jcardsim) connects to it.
Layers wrap any channel and are channels themselves (yubikit's processors):
  GetResponseLayer  61xx / 9Fxx: fetch the rest with GET RESPONSE and concatenate
  WrongLengthLayer  6Cxx: resend the command once with the Le the card asked for
  ChainingLayer     short APDUs only: splits a command with more than 255 data bytes into ISO
                    chained APDUs (CLA | 0x10)
  TracingLayer      counts APDUs and bytes each way per named phase, logs hex at DEBUG
`build_stack()` stacks them; `select()` selects the applet and returns a `CardSession` that knows
the card's capabilities and whether extended-length APDUs are in use.
A channel and its stack serve one thread at a time.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Self

from host.apdu import (
    CLA_CHAINING,
    CLA_ISO,
    MAX_EXTENDED_NE,
    MAX_SHORT_LC,
    MAX_SHORT_LC_WITH_LE,
    MAX_SHORT_NE,
    ApduError,
    ApduFormatError,
    CommandApdu,
    Ins,
    ResponseApdu,
    is_extended,
    sw_name,
)

log = logging.getLogger(__name__)
trace_log = logging.getLogger("host.channel.trace")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
APPLET_PROPERTIES = PROJECT_ROOT / "applet" / "applet.properties"


# ---- the applet's identity, defined once in applet/applet.properties --------------------------


@dataclass(frozen=True)
class AppletInfo:
    aid: bytes
    applet_class: str
    package_aid: bytes


def applet_info(path: Path = APPLET_PROPERTIES) -> AppletInfo:
    """Reads the applet's AID and class from applet/applet.properties (never copied by hand)."""
    props: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    try:
        return AppletInfo(
            aid=bytes.fromhex(props["applet.aid"].replace(":", "")),
            applet_class=props["applet.class"],
            package_aid=bytes.fromhex(props["package.aid"].replace(":", "")),
        )
    except KeyError as e:
        raise ValueError(f"{path} lacks the key {e}") from None


# ---- errors -----------------------------------------------------------------------------------


class ChannelError(Exception):
    """The channel failed: no reader, no card, I/O error, or a malformed answer."""


class NoReaderError(ChannelError):
    """No PC/SC reader, or none with the requested name."""


class NoCardError(ChannelError):
    """The reader has no card."""


class IncompleteResponseError(ChannelError):
    """The card dropped or truncated a response, or GET RESPONSE failed midway."""


class CommandTooLongError(ChannelError):
    """A command's data exceed what the card and channel can carry (no chaining, no extended)."""


def exchange(channel: Channel, command: bytes) -> ResponseApdu:
    """Transmits and parses the response; a dropped or truncated one raises
    IncompleteResponseError."""
    raw = channel.transmit(command)
    try:
        return ResponseApdu.parse(raw)
    except ApduFormatError as e:
        what = "dropped the response" if not raw else "truncated the response"
        raise IncompleteResponseError(
            f"the card {what} to {command[:5].hex().upper()}...: {e}"
        ) from None


# ---- the interface ----------------------------------------------------------------------------


class Channel(abc.ABC):
    """One ISO 7816 channel to one card."""

    @abc.abstractmethod
    def transmit(self, command: bytes) -> bytes:
        """Sends a command APDU, returns the response APDU (data + SW1 SW2)."""

    @abc.abstractmethod
    def reset(self) -> bytes:
        """Resets the card (transient state and selection are lost); returns the ATR."""

    @property
    @abc.abstractmethod
    def atr(self) -> bytes:
        """The card's answer to reset."""

    @property
    def extended_length(self) -> bool:
        """True if this channel carries extended-length APDUs (the card may still refuse them)."""
        return False

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the channel; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---- PC/SC (pyscard) --------------------------------------------------------------------------

# Readers known to pass extended APDUs through although they do not say so (vpcd: verified with
# jcardsim, 16 KB commands and answers).
_EXTENDED_READER_PREFIXES = ("Virtual PCD",)
_T1_PROTOCOL = 2  # smartcard.CardConnection.CardConnection.T1_protocol


def pcsc_errors() -> tuple[type[Exception], ...]:
    """What pyscard raises: two unrelated exception families."""
    from smartcard.Exceptions import SmartcardException
    from smartcard.pcsc.PCSCExceptions import BaseSCardException

    return (SmartcardException, BaseSCardException)


def list_readers() -> list[str]:
    """The PC/SC reader names; raises NoReaderError if pcscd cannot be reached."""
    from smartcard.System import readers

    try:
        return [str(r) for r in readers()]
    except pcsc_errors() as e:
        raise NoReaderError(f"cannot list PC/SC readers (is pcscd running?): {e}") from None


def find_reader(wanted: str | int) -> str:
    """A reader by index, exact name or unique name prefix."""
    names = list_readers()
    if not names:
        raise NoReaderError("no PC/SC reader is connected")
    if isinstance(wanted, int):
        if not 0 <= wanted < len(names):
            raise NoReaderError(f"no reader #{wanted}; readers: {names}")
        return names[wanted]
    if wanted in names:
        return wanted
    matches = [n for n in names if n.startswith(wanted)]
    if len(matches) != 1:
        why = "no reader" if not matches else "several readers"
        raise NoReaderError(f"{why} named {wanted!r}*; readers: {names}")
    return matches[0]


class PcscChannel(Channel):
    """A card in a PC/SC reader, through pyscard.

    `extended=None` guesses: extended-length APDUs under T=1 or in a known reader, short under
    T=0; pass True or False to decide for a reader that the guess gets wrong.
    """

    def __init__(self, reader: str | int = 0, *, extended: bool | None = None) -> None:
        from smartcard.Exceptions import NoCardException
        from smartcard.System import readers

        self.reader_name = find_reader(reader)
        try:
            target = next(r for r in readers() if str(r) == self.reader_name)
            self._connection = target.createConnection()
            self._connection.connect()
        except NoCardException:
            raise NoCardError(f"no card in reader {self.reader_name!r}") from None
        except pcsc_errors() as e:
            raise ChannelError(f"cannot connect to the card in {self.reader_name!r}: {e}") from None
        except StopIteration:
            raise NoReaderError(f"reader {self.reader_name!r} vanished") from None
        self._closed = False
        self._extended = self._guess_extended() if extended is None else extended
        log.info("connected to %r, ATR %s", self.reader_name, self.atr.hex().upper())

    def _guess_extended(self) -> bool:
        if self.reader_name.startswith(_EXTENDED_READER_PREFIXES):
            return True
        return bool(self._connection.getProtocol() == _T1_PROTOCOL)

    @property
    def extended_length(self) -> bool:
        return self._extended

    @property
    def atr(self) -> bytes:
        return bytes(self._connection.getATR())

    def transmit(self, command: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(command))
        except pcsc_errors() as e:
            raise ChannelError(f"transmit to {self.reader_name!r} failed: {e}") from None
        return bytes(data) + bytes((sw1, sw2))

    def reset(self) -> bytes:
        from smartcard.scard import SCARD_RESET_CARD

        try:
            self._connection.reconnect(disposition=SCARD_RESET_CARD)
        except pcsc_errors() as e:
            raise ChannelError(f"cannot reset the card in {self.reader_name!r}: {e}") from None
        return self.atr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(*pcsc_errors()):
            self._connection.disconnect()
        with contextlib.suppress(*pcsc_errors()):
            self._connection.release()


# ---- vpcd (the vsmartcard protocol, reader side) ----------------------------------------------

VPCD_POWER_OFF = 0
VPCD_POWER_ON = 1
VPCD_RESET = 2
VPCD_GET_ATR = 4


def vpcd_frame(payload: bytes) -> bytes:
    """One vpcd message: a 2-byte big-endian length, then the payload (1 byte = a control)."""
    if not 0 < len(payload) <= 0xFFFF:
        raise ValueError(f"vpcd payload of {len(payload)} bytes")
    return struct.pack(">H", len(payload)) + payload


class VpcdChannel(Channel):
    """The host listens on 127.0.0.1 (free port by default); a virtual card connects to it.

    Call `wait_for_card()` once the card is on its way (see host.simulator).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 30.0) -> None:
        self._server = socket.create_server((host, port))
        self._conn: socket.socket | None = None
        self._timeout = timeout
        self._atr = b""

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def wait_for_card(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> bytes:
        """Accepts the card's connection, powers it on and returns its ATR.

        `alive` is asked while waiting: when it turns False (the card's process died) this fails
        at once instead of at the timeout.
        """
        deadline = time.monotonic() + timeout
        while self._conn is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelError(f"no virtual card connected to {self.address} in {timeout} s")
            if not alive():
                raise ChannelError("the virtual card's process exited before it connected")
            self._server.settimeout(min(left, 0.1))
            with contextlib.suppress(TimeoutError):
                self._conn, _ = self._server.accept()
        self._conn.settimeout(self._timeout)
        self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send(bytes((VPCD_POWER_ON,)))
        return self._ask_atr()

    @property
    def extended_length(self) -> bool:
        return True

    @property
    def atr(self) -> bytes:
        return self._atr

    def transmit(self, command: bytes) -> bytes:
        if len(command) < 4:
            raise ApduFormatError(f"a command APDU has at least 4 bytes, got {command.hex()}")
        self._send(command)
        return self._receive()

    def reset(self) -> bytes:
        self._send(bytes((VPCD_RESET,)))
        return self._ask_atr()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(ChannelError):
                self._send(bytes((VPCD_POWER_OFF,)))
            self._conn.close()
            self._conn = None
        self._server.close()

    def _ask_atr(self) -> bytes:
        self._send(bytes((VPCD_GET_ATR,)))
        self._atr = self._receive()
        return self._atr

    def _socket(self) -> socket.socket:
        if self._conn is None:
            raise ChannelError("no virtual card is connected (wait_for_card first, or closed)")
        return self._conn

    def _send(self, payload: bytes) -> None:
        try:
            self._socket().sendall(vpcd_frame(payload))
        except OSError as e:
            raise ChannelError(f"the virtual card's connection failed: {e}") from None

    def _receive(self) -> bytes:
        (length,) = struct.unpack(">H", self._receive_exactly(2))
        return self._receive_exactly(length)

    def _receive_exactly(self, n: int) -> bytes:
        sock = self._socket()
        chunks = bytearray()
        while len(chunks) < n:
            try:
                chunk = sock.recv(n - len(chunks))
            except TimeoutError:
                raise ChannelError(
                    f"no answer from the virtual card in {self._timeout} s"
                ) from None
            except OSError as e:
                raise ChannelError(f"the virtual card's connection failed: {e}") from None
            if not chunk:
                raise ChannelError("the virtual card closed the connection")
            chunks += chunk
        return bytes(chunks)


# ---- layers -----------------------------------------------------------------------------------


class Layer(Channel):
    """A channel that wraps another; everything but transmit goes to the inner channel."""

    def __init__(self, inner: Channel) -> None:
        self.inner = inner

    def reset(self) -> bytes:
        return self.inner.reset()

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    @property
    def extended_length(self) -> bool:
        return self.inner.extended_length

    def close(self) -> None:
        self.inner.close()


@dataclass
class Traffic:
    """APDUs and bytes (headers and status words included) one way and the other."""

    apdus: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    largest_sent: int = 0  # the longest command APDU
    largest_received: int = 0  # the longest response APDU

    def add(self, other: Traffic) -> None:
        self.apdus += other.apdus
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.seconds += other.seconds
        self.largest_sent = max(self.largest_sent, other.largest_sent)
        self.largest_received = max(self.largest_received, other.largest_received)

    def __str__(self) -> str:
        return (
            f"{self.apdus} APDUs, {self.bytes_sent} B sent, {self.bytes_received} B received "
            f"(largest {self.largest_sent} / {self.largest_received}), "
            f"{self.seconds * 1000:.1f} ms"
        )


@dataclass
class TraceStats:
    """Traffic per named phase; `with stats.phase("handshake"):` attributes APDUs to it."""

    phases: dict[str, Traffic] = field(default_factory=dict)
    current: str = "default"

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Traffic]:
        previous, self.current = self.current, name
        try:
            yield self.phases.setdefault(name, Traffic())
        finally:
            self.current = previous

    def record(self, sent: int, received: int, seconds: float) -> None:
        one = Traffic(1, sent, received, seconds, sent, received)
        self.phases.setdefault(self.current, Traffic()).add(one)

    @property
    def total(self) -> Traffic:
        total = Traffic()
        for traffic in self.phases.values():
            total.add(traffic)
        return total

    def reset(self) -> None:
        self.phases.clear()

    def summary(self) -> str:
        lines = [f"{name}: {traffic}" for name, traffic in self.phases.items()]
        return "\n".join(lines + [f"total: {self.total}"])


class TracingLayer(Layer):
    """Counts every APDU that reaches the inner channel; logs them in hex at DEBUG."""

    def __init__(self, inner: Channel, stats: TraceStats | None = None) -> None:
        super().__init__(inner)
        self.stats = stats if stats is not None else TraceStats()

    def transmit(self, command: bytes) -> bytes:
        debug = trace_log.isEnabledFor(logging.DEBUG)
        if debug:
            trace_log.debug("[%s] > %s", self.stats.current, command.hex().upper())
        start = time.perf_counter()
        response = self.inner.transmit(command)
        self.stats.record(len(command), len(response), time.perf_counter() - start)
        if debug:
            trace_log.debug("[%s] < %s", self.stats.current, response.hex().upper())
        return response


class WrongLengthLayer(Layer):
    """On 6Cxx, resends the same command once with Le = xx."""

    def transmit(self, command: bytes) -> bytes:
        response = self.inner.transmit(command)
        if len(response) != 2 or response[0] != 0x6C:
            return response
        ne = response[1] or MAX_SHORT_NE
        log.debug("card answered %s: resending with Ne %d", sw_name(0x6C00 | response[1]), ne)
        retry = CommandApdu.parse(command).with_ne(ne)
        return self.inner.transmit(retry.encode(extended=is_extended(command)))


_MORE_DATA_SW1 = (0x61, 0x9F)


class GetResponseLayer(Layer):
    """On 61xx (or 9Fxx), fetches the rest with GET RESPONSE (same CLA, Le = xx) and concatenates.

    Strict: a GET RESPONSE that fails or returns fewer bytes than announced, or a response that
    grows past `max_response`, is an IncompleteResponseError.
    """

    def __init__(self, inner: Channel, max_response: int = MAX_EXTENDED_NE) -> None:
        super().__init__(inner)
        self.max_response = max_response

    def transmit(self, command: bytes) -> bytes:
        response = exchange(self.inner, command)
        if response.sw1 not in _MORE_DATA_SW1:
            return response.encode()
        cla = command[0] & ~CLA_CHAINING
        data = bytearray(response.data)
        while response.sw1 in _MORE_DATA_SW1:
            response = self._fetch(cla, response.sw2 or MAX_SHORT_NE, len(data))
            data += response.data
        return ResponseApdu(bytes(data), response.sw).encode()

    def _fetch(self, cla: int, wanted: int, have: int) -> ResponseApdu:
        if have + wanted > self.max_response:
            raise IncompleteResponseError(
                f"the card announces more than {self.max_response} response bytes"
            )
        response = exchange(self.inner, CommandApdu(cla, Ins.GET_RESPONSE, ne=wanted).encode())
        if not response.ok and response.sw1 not in _MORE_DATA_SW1:
            raise IncompleteResponseError(
                f"after {have} response bytes, GET RESPONSE answered {sw_name(response.sw)}"
            )
        if len(response.data) < wanted:
            raise IncompleteResponseError(
                f"GET RESPONSE asked for {wanted} bytes and got {len(response.data)} "
                f"after {have}: the response was truncated"
            )
        return response


class ChainingLayer(Layer):
    """Makes every command a short APDU: an extended one is re-encoded short, and one with more
    than 255 data bytes (254 with Le: MAX_SHORT_LC_WITH_LE) is split into ISO 7816-4 chained
    APDUs (CLA | 0x10 on all but the last).

    Stacked only when extended length is not in use. Without chaining (`enabled=False`, the card
    does not support it) a long command is a CommandTooLongError. A link the card refuses ends
    the chain: its response is returned as the command's.
    """

    def __init__(self, inner: Channel, *, enabled: bool = True, max_lc: int = MAX_SHORT_LC) -> None:
        super().__init__(inner)
        self.enabled = enabled
        self.max_lc = max_lc

    def transmit(self, command: bytes) -> bytes:
        if not is_extended(command):
            return self.inner.transmit(command)
        apdu = CommandApdu.parse(command)
        apdu = apdu.with_ne(min(apdu.ne, MAX_SHORT_NE))
        if apdu.fits_short and len(apdu.data) <= self.max_lc:
            return self.inner.transmit(apdu.encode(extended=False))
        if not self.enabled:
            raise CommandTooLongError(
                f"{len(apdu.data)} data bytes need command chaining or extended length, "
                "and neither the card nor the channel offers one"
            )
        return self._chain(apdu)

    def _chain(self, apdu: CommandApdu) -> bytes:
        data = apdu.data
        links = [data[i : i + self.max_lc] for i in range(0, len(data), self.max_lc)]
        last_max = min(self.max_lc, MAX_SHORT_LC_WITH_LE) if apdu.ne else self.max_lc
        if len(links[-1]) > last_max:  # one more link rather than Lc 255 with Le
            links[-1:] = [links[-1][:last_max], links[-1][last_max:]]
        for link in links[:-1]:
            part = CommandApdu(apdu.cla | CLA_CHAINING, apdu.ins, apdu.p1, apdu.p2, link)
            response = exchange(self.inner, part.encode(extended=False))
            if not response.ok:
                log.warning("the card broke the command chain: %s", sw_name(response.sw))
                return response.encode()
        last = replace(apdu, data=links[-1])
        return self.inner.transmit(last.encode(extended=False))


def build_stack(
    channel: Channel, *, extended: bool, chaining: bool, stats: TraceStats | None = None
) -> Channel:
    """The standard stack, top down: [chaining] > GET RESPONSE > wrong Le > tracing > channel.

    Tracing sits next to the channel so that it counts every APDU on the wire. With `extended`
    long commands go as extended APDUs; otherwise ChainingLayer makes them short (chained if
    `chaining`, else refused).
    """
    stack: Channel = TracingLayer(channel, stats)
    stack = GetResponseLayer(WrongLengthLayer(stack))
    if not extended:
        stack = ChainingLayer(stack, enabled=chaining)
    return stack


# ---- the selected applet ----------------------------------------------------------------------

TAG_VERSION = 0x80
TAG_CAPABILITIES = 0x81
TAG_MESSAGE_CAPACITY = 0x82
TAG_DEFAULT_PACKET = 0x83
TAG_IDENTITY_SLOTS = 0x84
CAP_EXTENDED_LENGTH = 0x01
CAP_COMMAND_CHAINING = 0x02
CAP_GET_RESPONSE = 0x04


def parse_tlv(data: bytes) -> dict[int, bytes]:
    """Simple TLV: 1-byte tag, 1-byte length (the SELECT response)."""
    items: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        if at + 2 > len(data) or at + 2 + data[at + 1] > len(data):
            raise ApduFormatError(f"truncated TLV at offset {at}: {data.hex()}")
        tag, length = data[at], data[at + 1]
        items[tag] = data[at + 2 : at + 2 + length]
        at += 2 + length
    return items


@dataclass(frozen=True)
class CardCapabilities:
    """What the applet's SELECT response says about it."""

    version: tuple[int, int]
    extended_length: bool
    command_chaining: bool
    get_response: bool
    message_capacity: int
    default_packet_size: int
    extra: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes) -> CardCapabilities:
        tlv = parse_tlv(data)
        try:
            major, minor = tlv.pop(TAG_VERSION)[:2]
            caps = tlv.pop(TAG_CAPABILITIES)[0]
            capacity, packet = tlv.pop(TAG_MESSAGE_CAPACITY), tlv.pop(TAG_DEFAULT_PACKET)
        except (KeyError, IndexError, ValueError):
            raise ApduFormatError(f"SELECT response lacks a capability: {data.hex()}") from None
        return cls(
            version=(major, minor),
            extended_length=bool(caps & CAP_EXTENDED_LENGTH),
            command_chaining=bool(caps & CAP_COMMAND_CHAINING),
            get_response=bool(caps & CAP_GET_RESPONSE),
            message_capacity=int.from_bytes(capacity, "big"),
            default_packet_size=int.from_bytes(packet, "big"),
            extra=tlv,
        )

    @property
    def identity_slots(self) -> int | None:
        """How many identities the card holds (tag 84), if it says."""
        slots = self.extra.get(TAG_IDENTITY_SLOTS)
        return slots[0] if slots else None


class CardSession:
    """The applet, selected on a channel through the standard stack.

    `extended`: None uses extended-length APDUs when both card and channel support them; False
    forces short APDUs (chaining and GET RESPONSE); True requires extended ones.
    """

    def __init__(
        self,
        channel: Channel,
        aid: bytes | None = None,
        *,
        extended: bool | None = None,
        stats: TraceStats | None = None,
    ) -> None:
        self.channel = channel
        self.aid = aid if aid is not None else applet_info().aid
        self.stats = stats if stats is not None else TraceStats()
        self._want_extended = extended
        self.extended = False
        self.caps = self.select()

    def select(self) -> CardCapabilities:
        """(Re)selects the applet, which drops any conversation in progress."""
        command = CommandApdu(CLA_ISO, Ins.SELECT, 0x04, 0x00, self.aid, ne=MAX_SHORT_NE)
        basic = build_stack(self.channel, extended=False, chaining=False, stats=self.stats)
        with self.stats.phase("select"):
            data = exchange(basic, command.encode()).check("SELECT")
        self.caps = CardCapabilities.parse(data)
        self.extended = self._choose_extended(self.caps)
        self._stack: Channel = build_stack(
            self.channel,
            extended=self.extended,
            chaining=self.caps.command_chaining,
            stats=self.stats,
        )
        log.debug(
            "selected %s: %s, extended length %s", self.aid.hex().upper(), self.caps, self.extended
        )
        return self.caps

    def _choose_extended(self, caps: CardCapabilities) -> bool:
        possible = caps.extended_length and self.channel.extended_length
        if self._want_extended and not possible:
            raise ChannelError(
                f"extended length requested, but card supports it: {caps.extended_length}, "
                f"channel: {self.channel.extended_length}"
            )
        return possible if self._want_extended is None else self._want_extended

    def reset(self) -> CardCapabilities:
        """Resets the card and selects the applet again."""
        self.channel.reset()
        return self.select()

    @property
    def max_ne(self) -> int:
        """The largest Ne worth asking for: 65536 with extended APDUs, else 256."""
        return MAX_EXTENDED_NE if self.extended else MAX_SHORT_NE

    def transmit(self, command: CommandApdu) -> ResponseApdu:
        """Sends a command through the stack; any status word comes back."""
        return exchange(self._stack, command.encode())

    def send(self, command: CommandApdu) -> bytes:
        """Sends a command; returns the data of a 9000 answer, raises ApduError otherwise."""
        return self.transmit(command).check(_command_name(command))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _command_name(command: CommandApdu) -> str:
    try:
        return Ins(command.ins).name.replace("_", " ")
    except ValueError:
        return f"INS {command.ins:02X}"


def select(
    channel: Channel, aid: bytes | None = None, *, extended: bool | None = None
) -> CardSession:
    """Selects the applet (AID from applet/applet.properties by default) on the channel."""
    return CardSession(channel, aid, extended=extended)


__all__ = [
    "AppletInfo",
    "ApduError",
    "CardCapabilities",
    "CardSession",
    "ChainingLayer",
    "Channel",
    "ChannelError",
    "CommandTooLongError",
    "GetResponseLayer",
    "IncompleteResponseError",
    "Layer",
    "NoCardError",
    "NoReaderError",
    "PcscChannel",
    "TraceStats",
    "TracingLayer",
    "Traffic",
    "VpcdChannel",
    "WrongLengthLayer",
    "applet_info",
    "build_stack",
    "exchange",
    "find_reader",
    "list_readers",
    "select",
]
