"""The vsmartcard (vpcd) protocol, reader side: the host listens and a virtual card connects."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable

from host.iso7816.apdu import ApduFormatError
from host.iso7816.channel import Channel, ChannelError

log = logging.getLogger(__name__)

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
