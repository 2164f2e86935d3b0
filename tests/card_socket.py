"""A socket whose other end is the card: the host's record framing and flight assembly carry the
client's records to the real applet (in jcardsim or a reader) through its commands, no TCP."""
from __future__ import annotations

from host.card.commands import SeTlsCard
from host.tls.records import FlightAssembler, RecordReader


class CardSocket:
    """Where a TCP socket would be: the client's records go through the host's assembler to the
    card, which answers; `sent` counts what the client sent, `messages` what went to the card."""

    def __init__(self, card: SeTlsCard, assemble: bool = True, handle: int | None = None) -> None:
        self.card = card
        self.assemble = assemble
        self.handle = handle  # the card's session these flights belong to (None: the card's default)
        self.reader = RecordReader()
        self.flights = FlightAssembler()
        self.pending = b""
        self.sent = 0
        self.messages = 0

    def sendall(self, data: bytes) -> None:
        self.sent += len(data)
        if not self.assemble:  # the card alone: each send is one message, as it came
            self.messages += 1
            self.pending += self.card.exchange(data, self.handle)
            return
        self.reader.feed(data)
        while (one := self.reader.next_record()) is not None:
            message = self.flights.add(one)
            if message is not None:
                self.messages += 1
                answer = self.card.exchange(message, self.handle)
                self.flights.answered(answer)
                self.pending += answer

    def recv(self, size: int) -> bytes:
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def close(self) -> None:
        pass
