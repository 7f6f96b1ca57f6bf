"""Frames written to one socket inside `coalesced()` go out in one write, in order, bounded; a
stream's writes of one loop iteration (`JoinedPerIteration`) go out together when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kefu import coalesce
from kefu.coalesce import JoinedPerIteration, coalesced


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


def test_outside_a_block_every_frame_is_written_at_once() -> None:
    t = FakeTransport()
    coalesce.write(t, b"a")
    coalesce.write(t, b"b")
    assert t.writes == [b"a", b"b"]


def test_a_block_writes_each_transport_once_in_order_at_its_end() -> None:
    a, b = FakeTransport(), FakeTransport()
    with coalesced():
        coalesce.write(a, b"1")
        coalesce.write(b, b"x")
        coalesce.write(a, b"2")
        with coalesced():  # a nested block joins the outer one
            coalesce.write(a, b"3")
        assert a.writes == [] and b.writes == []
    assert a.writes == [b"123"] and b.writes == [b"x"]
    coalesce.write(a, b"4")  # the block is over: straight through again
    assert a.writes == [b"123", b"4"]


def test_held_frames_past_the_bound_are_written_at_once() -> None:
    t = FakeTransport()
    frame = b"f" * 1000
    n = coalesce.FLUSH_AT // len(frame) + 5
    with coalesced():
        for _ in range(n):
            coalesce.write(t, frame)
        assert len(t.writes) == 1 and len(t.writes[0]) >= coalesce.FLUSH_AT  # backpressure can act
    assert b"".join(t.writes) == frame * n and len(t.writes) == 2


def test_a_transport_closed_during_the_block_gets_nothing_and_an_error_still_flushes() -> None:
    closed, open_ = FakeTransport(), FakeTransport()
    try:
        with coalesced():
            coalesce.write(closed, b"lost")
            coalesce.write(open_, b"kept")
            closed.closing = True
            raise RuntimeError("a bug while fanning out")
    except RuntimeError:
        pass
    assert closed.writes == [] and open_.writes == [b"kept"]
    coalesce.write(open_, b"after")
    assert open_.writes == [b"kept", b"after"]


class FakeStream:
    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.closing = False

    def writelines(self, data: Iterable[bytes]) -> None:
        self.writes.append(list(data))

    def is_closing(self) -> bool:
        return self.closing


async def test_one_iterations_writes_go_out_together_in_order_then_what_last_adds() -> None:
    stream, lasts = FakeStream(), []

    def last() -> list[bytes]:
        lasts.append(len(stream.writes))
        return [b"PING"] if len(lasts) == 1 else []
    joined = JoinedPerIteration(stream, last)

    for i in range(3):  # callers of one iteration
        joined.write([b"SUB", str(i).encode()])
    joined.write(())  # only asks for `last`: no chunk of its own
    assert stream.writes == [], "held until the iteration ends"
    await asyncio.sleep(0)
    assert stream.writes == [[b"SUB", b"0", b"SUB", b"1", b"SUB", b"2", b"PING"]]
    assert lasts == [0], "asked once, at the write"
    joined.write([b"next"])
    await asyncio.sleep(0)
    assert stream.writes[1:] == [[b"next"]], "a later iteration: a write of its own"


async def test_a_stream_closed_before_the_iteration_ends_gets_nothing() -> None:
    stream = FakeStream()
    joined = JoinedPerIteration(stream)
    joined.write([b"lost"])
    stream.closing = True
    await asyncio.sleep(0)
    joined.write(())
    await asyncio.sleep(0)
    assert stream.writes == []
