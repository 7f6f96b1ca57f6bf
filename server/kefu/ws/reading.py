"""Reading a client's frames: whole text messages without websockets' parser, the rest with it.

websockets' sans-I/O parser runs a chain of generators per frame: about 4 µs for a chat message,
a third of what kefu's own handling of it costs. Nearly every frame a client sends is a whole,
masked, unfragmented text message, which needs no parser state: `split_plain` reads those at the
start of a read itself (unmask, decode) and hands each whole control frame to websockets alone,
which answers a ping, records a close and fails what is malformed, as it would. At anything else
— a fragment, a binary or oversized frame, a 64-bit length, a frame cut by the read, reserved
bits, an unmasked frame — it stops, and websockets reads the rest of the connection. Until then
websockets is only ever handed whole frames, so its parser is at a frame's start when it takes
over: what arrives is what websockets alone would have delivered (a property test compares them).
"""

from __future__ import annotations

from websockets.frames import Frame
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.speedups import apply_mask

_TEXT = 0x81  # the first byte of a whole text message: FIN, no reserved bit, opcode 1
_CLOSE = 0x88
_CONTROL = frozenset((_CLOSE, 0x89, 0x8A))  # close, ping, pong (FIN, no reserved bit)

#: What a read brought, in order: a text message (decoded), a frame websockets parsed, or None
#: for a text message that is not UTF-8 (the connection is then failed with 1007).
Arrived = str | Frame | None


def split_plain(data: bytes, limit: int | None) -> tuple[list[str | bytes | None], int]:
    """The frames at the start of `data` that need no parser state, in order — a whole text
    message's text, a whole control frame's bytes, None for text that is not UTF-8 (and nothing
    after it) — and the offset of the first byte left to websockets (after a close frame, all
    that follows it is websockets' to discard)."""
    out: list[str | bytes | None] = []
    end, at = len(data), 0
    while end - at >= 6:
        head, size = data[at], data[at + 1]
        if size < 0x80:  # not masked
            break
        size &= 0x7F
        start = at + 6
        if size == 126:
            if end - at < 8:
                break
            size, start = (data[at + 2] << 8) | data[at + 3], at + 8
        elif size == 127:
            break
        stop = start + size
        if stop > end or (limit is not None and size > limit):
            break
        if head == _TEXT:
            try:
                out.append(apply_mask(data[start:stop], data[start - 4:start]).decode())
            except UnicodeDecodeError:
                out.append(None)
                return out, end
        elif head in _CONTROL and size < 126:
            out.append(data[at:stop])
            if head == _CLOSE:
                return out, stop
        else:
            break
        at = stop
    return out, at


def read(proto: ServerProtocol, data: bytes, plain: bool) -> tuple[list[Arrived], list[bytes], bool]:
    """Feed one read to the connection: what arrived, what websockets answered (pongs, a close
    reply, an empty chunk when the TCP connection should end), and whether the next read may
    still start with `split_plain` (False once websockets has read a partial frame)."""
    arrived: list[Arrived] = []
    answers: list[bytes] = []
    if plain and proto.state is State.OPEN:
        items, at = split_plain(data, proto.max_message_size)
        for item in items:
            if isinstance(item, bytes):
                _parse(proto, item, arrived, answers)
            else:
                arrived.append(item)
        if at == len(data):
            return arrived, answers, True
        data = data[at:]
    _parse(proto, data, arrived, answers)
    return arrived, answers, False


def _parse(proto: ServerProtocol, data: bytes, arrived: list[Arrived], answers: list[bytes]) -> None:
    proto.receive_data(data)
    answers += proto.data_to_send()
    arrived += proto.events_received()  # type: ignore[arg-type]  # a server protocol's are frames
