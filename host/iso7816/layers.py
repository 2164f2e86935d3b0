"""Layers stacked on a channel (yubikit's processors); each is a channel itself.

  GetResponseLayer  61xx / 9Fxx: fetch the rest with GET RESPONSE and concatenate
  WrongLengthLayer  6Cxx: resend the command once with the Le the card asked for
  ChainingLayer     short APDUs only: splits a command with more than 255 data bytes into ISO
                    chained APDUs (CLA | 0x10)
  TracingLayer      counts APDUs and bytes each way per named phase, logs hex at DEBUG
`build_stack()` stacks them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from host.iso7816.apdu import (
    CLA_CHAINING,
    INS_GET_RESPONSE,
    MAX_EXTENDED_NE,
    MAX_SHORT_LC,
    MAX_SHORT_NE,
    CommandApdu,
    ResponseApdu,
    is_extended,
    sw_name,
)
from host.iso7816.channel import Channel, CommandTooLongError, IncompleteResponseError, exchange
from host.iso7816.quirks import Quirks

log = logging.getLogger(__name__)
trace_log = logging.getLogger("host.iso7816.trace")

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

    @property
    def reader(self) -> str:
        return self.inner.reader

    @property
    def quirks(self) -> Quirks:
        return self.inner.quirks

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
        response = exchange(self.inner, CommandApdu(cla, INS_GET_RESPONSE, ne=wanted).encode())
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
    than 255 data bytes (fewer with Le where the card's quirks say so) is split into ISO 7816-4 chained
    APDUs (CLA | 0x10 on all but the last).

    Stacked only when extended length is not in use. Without chaining (`enabled=False`, the card
    does not support it) a long command is a CommandTooLongError. A link the card refuses ends
    the chain: its response is returned as the command's.
    """

    def __init__(self, inner: Channel, *, enabled: bool = True, max_lc: int = MAX_SHORT_LC,
                 max_lc_with_le: int | None = None) -> None:
        super().__init__(inner)
        self.enabled = enabled
        self.max_lc = max_lc
        self.max_lc_with_le = inner.quirks.max_short_lc_with_le if max_lc_with_le is None else max_lc_with_le

    def transmit(self, command: bytes) -> bytes:
        if not is_extended(command):
            return self.inner.transmit(command)
        apdu = CommandApdu.parse(command)
        apdu = apdu.with_ne(min(apdu.ne, MAX_SHORT_NE))
        if apdu.fits_short(self.max_lc_with_le) and len(apdu.data) <= self.max_lc:
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
        last_max = min(self.max_lc, self.max_lc_with_le) if apdu.ne else self.max_lc
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
