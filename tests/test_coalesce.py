"""Frames written to one socket inside `coalesced()` go out in one write, in order, bounded."""

from __future__ import annotations

from kefu import coalesce
from kefu.coalesce import coalesced


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
