"""Reading client frames (`kefu.ws.reading`): whatever the frames and however the reads cut them,
what arrives, what is answered and how the connection ends are what websockets alone gives."""

from __future__ import annotations

import itertools
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from kefu.ws.reading import read, split_plain

LIMIT = 300  # a small message limit, so that oversized frames come up
MASK = b"\x01\x02\x03\x04"


def masked(head: int, payload: bytes, length: bytes | None = None) -> bytes:
    """A client frame: first byte `head`, masked; `length` overrides the length field."""
    if length is None:
        n = len(payload)
        length = bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + struct.pack("!H", n)
    return bytes((head,)) + length + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


text = st.text(max_size=150).map(lambda t: t.encode())
control = st.binary(max_size=125)
frames = st.one_of(
    text.map(lambda p: masked(0x81, p)),  # whole text messages: most of what clients send
    text.map(lambda p: masked(0x81, p)),
    control.map(lambda p: masked(0x89, p)),  # ping
    control.map(lambda p: masked(0x8A, p)),  # pong
    st.tuples(text, text).map(lambda ab: masked(0x01, ab[0]) + masked(0x89, b"") + masked(0x80, ab[1])),
    st.binary(max_size=50).map(lambda p: masked(0x82, p)),  # binary
    st.just(masked(0x81, b"x" * (LIMIT + 1))),  # over the limit
    st.just(masked(0x81, b"hi", bytes((0x80 | 127,)) + struct.pack("!Q", 2))),  # 64-bit length
    st.just(bytes((0x81, 2)) + b"hi"),  # not masked
    st.just(masked(0xC1, b"hi")),  # a reserved bit
    st.just(masked(0x81, b"\xff\xfe")),  # not UTF-8
    st.just(masked(0x88, struct.pack("!H", 1000) + b"bye")),  # close
)


def arrived_as_websockets_gives_it(items: list[Any]) -> list[Any]:
    """Texts as text (None, as websockets' frame would fail to decode, as "not UTF-8"), other
    frames as (opcode, data, fin)."""
    out = []
    for item in items:
        if isinstance(item, str) or item is None:
            out.append(("text", item if item is not None else "not UTF-8"))
        elif isinstance(item, Frame):
            if item.opcode is Opcode.TEXT and item.fin:
                try:
                    out.append(("text", bytes(item.data).decode()))
                except UnicodeDecodeError:
                    out.append(("text", "not UTF-8"))
            else:
                out.append((item.opcode, bytes(item.data), item.fin))
    # kefu fails the connection at text that is not UTF-8: nothing after it counts.
    if ("text", "not UTF-8") in out:
        out = out[:out.index(("text", "not UTF-8")) + 1]
    return out


def server() -> ServerProtocol:
    return ServerProtocol(max_size=LIMIT, state=State.OPEN)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 4000), max_size=6))
def test_reads_give_what_websockets_alone_gives(stream: list[bytes], cuts: list[int]) -> None:
    data = b"".join(stream)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]

    alone, alone_events, alone_answers = server(), [], []
    for chunk in chunks:
        alone.receive_data(chunk)
        alone_events += alone.events_received()
        alone_answers += alone.data_to_send()

    ours, our_events, our_answers, plain = server(), [], [], True
    for chunk in chunks:
        arrived, answers, plain = read(ours, chunk, plain)
        our_events += arrived
        our_answers += answers
        if None in arrived:
            break  # kefu fails the connection here (1007)

    expected = arrived_as_websockets_gives_it(alone_events)
    assert arrived_as_websockets_gives_it(our_events) == expected
    if ("text", "not UTF-8") not in expected:  # (websockets alone reads on; kefu would not)
        assert b"".join(our_answers) == b"".join(alone_answers)
        assert ours.state is alone.state
        assert ours.close_rcvd == alone.close_rcvd and ours.close_sent == alone.close_sent


def test_whole_text_messages_are_read_without_websockets_and_a_cut_frame_is_left_to_it() -> None:
    one, two = masked(0x81, "你好".encode()), masked(0x81, b"x" * 200)  # 7- and 16-bit lengths
    ping = masked(0x89, b"p")
    items, at = split_plain(one + ping + two + one[:3], LIMIT)
    assert items == ["你好", ping, "x" * 200] and at == len(one + ping + two)
    assert split_plain(one + masked(0x88, b"") + one, LIMIT) == (["你好", masked(0x88, b"")], len(one) + 6)
