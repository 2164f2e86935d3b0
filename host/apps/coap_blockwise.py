"""Block-wise transfers (RFC 7959) over CoAP over TCP/TLS (RFC 8323 section 6), sans-IO.

Only numbers and bytes here; `host.apps.coap_tcp` puts them in messages:

- `BlockOption`: the value of a Block1 or Block2 option (RFC 7959 2.2), NUM, M and SZX, with the
  block size 2**(SZX + 4). SZX 7 is reserved in RFC 7959 and means BERT in RFC 8323 6; this server
  does not announce BERT (no Block-Wise-Transfer option in its CSM), so SZX 7 is an error.
- `block_of()`: the NUM-th block of a representation (RFC 7959 2.4, Block2).
- `Block1Upload`: the server side of an atomic Block1 upload (RFC 7959 2.5): blocks in order,
  2.31 Continue for each but the last, the whole body with the last one.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

MIN_SZX = 0                  # 16 bytes
MAX_SZX = 6                  # 1024 bytes, the largest non-BERT block (RFC 7959 2.2)
BERT_SZX = 7                 # RFC 8323 6; reserved in RFC 7959
MAX_NUM = (1 << 20) - 1      # NUM has 4, 12 or 20 bits (the option value has at most 3 bytes)


class BlockError(ValueError):
    """A Block option the server cannot honour; the request gets 4.00 Bad Request (RFC 7959 2.2)."""


def block_size(szx: int) -> int:
    """RFC 7959 2.2: the block size is 2**(SZX + 4) bytes."""
    return 1 << (szx + 4)


@dataclass(frozen=True)
class BlockOption:
    """A Block1 or Block2 option value (RFC 7959 2.2): NUM << 4 | M << 3 | SZX, in 0 to 3 bytes."""

    num: int
    more: bool
    szx: int

    def __post_init__(self) -> None:
        if not 0 <= self.num <= MAX_NUM or not MIN_SZX <= self.szx <= MAX_SZX:
            raise BlockError(f"NUM {self.num} and SZX {self.szx} are not a block this server handles")

    @property
    def size(self) -> int:
        return block_size(self.szx)

    @property
    def offset(self) -> int:
        """Where the block starts in the whole body (RFC 7959 2.2: NUM * size)."""
        return self.num * self.size

    @classmethod
    def decode(cls, value: bytes) -> BlockOption:
        if len(value) > 3:
            raise BlockError(f"a Block option has at most 3 bytes, not {len(value)}")
        number = int.from_bytes(value, "big")
        if number & 0x7 == BERT_SZX:
            raise BlockError("SZX 7 (BERT, RFC 8323 6) needs a Block-Wise-Transfer option in the server's CSM")
        return cls(number >> 4, bool(number & 0x8), number & 0x7)

    def encode(self) -> bytes:
        """As a uint option value: as few bytes as possible (RFC 7252 3.2)."""
        number = self.num << 4 | int(self.more) << 3 | self.szx
        return number.to_bytes((number.bit_length() + 7) // 8, "big")


def block_of(body: bytes, offset: int, szx: int) -> BlockOption:
    """The Block2 option for the block of `body` at `offset` in blocks of SZX (RFC 7959 2.4: a
    server may answer with a smaller SZX than asked; NUM then counts blocks of its size).
    BlockError if the offset is past the end of a non-empty body."""
    size = block_size(szx)
    if offset and offset >= len(body):
        raise BlockError(f"block at byte {offset} is past the end of the {len(body)}-byte representation")
    return BlockOption(offset // size, offset // size * size + size < len(body), szx)


def block_payload(body: bytes, block: BlockOption) -> bytes:
    return body[block.offset:block.offset + block.size]


class UploadOutcome(enum.Enum):
    """What one Block1 request makes of an upload (RFC 7959 2.5, 2.9)."""

    CONTINUE = "2.31 Continue"                        # more blocks to come
    COMPLETE = "complete"                             # the body is whole: process the request
    INCOMPLETE = "4.08 Request Entity Incomplete"     # a block out of order, or no upload started
    TOO_LARGE = "4.13 Request Entity Too Large"       # the body would pass max_body
    BAD_BLOCK = "4.00 Bad Request"                    # a non-final block of the wrong size


@dataclass
class Block1Upload:
    """Reassembles one atomic Block1 upload at a time per connection (RFC 7959 2.5).

    Blocks are matched by `key` (the method and the Uri-Path: tokens may change between blocks);
    a NUM 0 block starts over, any other block must start where the body ends (the client may
    lower SZX on the way). The body is at most `max_body` bytes (else 4.13 with Size1).
    """

    max_body: int
    key: object = field(default=None, init=False)
    body: bytearray = field(default_factory=bytearray, init=False, repr=False)

    def add(self, key: object, block: BlockOption, payload: bytes) -> tuple[UploadOutcome, bytes]:
        """The outcome of one block, and the whole body when it is COMPLETE."""
        if block.num == 0:
            self.key, self.body = key, bytearray()
        elif key != self.key or block.offset != len(self.body):
            self._forget()
            return UploadOutcome.INCOMPLETE, b""
        if block.more and len(payload) != block.size:
            self._forget()
            return UploadOutcome.BAD_BLOCK, b""
        if len(self.body) + len(payload) > self.max_body:
            self._forget()
            return UploadOutcome.TOO_LARGE, b""
        self.body += payload
        if block.more:
            return UploadOutcome.CONTINUE, b""
        body = bytes(self.body)
        self._forget()
        return UploadOutcome.COMPLETE, body

    def _forget(self) -> None:
        self.key, self.body = None, bytearray()
