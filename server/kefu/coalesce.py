"""Writes to one socket joined into one: a batch's frames, and a loop iteration's Redis commands.

A committed batch of 100 messages fans out to every agent socket: written one by one, that is 100
`send` calls per agent, each a system call here and a wake-up at the client. Inside `coalesced()`
the socket writer (ws/transport.py `immediate_writer`) holds each frame for its transport, and the
block's end writes each transport's frames joined, in the order they were written. A transport
whose held frames pass `FLUSH_AT` bytes is written at once, so its backpressure (Sanic's pause)
still turns later frames into the socket's bounded queue as it would without the block.

The block must not await: nothing else can then write to the same transport in between (a queued
frame, a pong, a close), so the order on the wire is the order of the writes. A transport closed
by the end of the block drops what was held, as it would have dropped the frames themselves.

`JoinedPerIteration` does the same for commands many callers write to one Redis connection
(every QR bind looks its ticket up on the lane, subscribes two channels and waits for a PING):
what is written during one loop iteration goes out as one write when the iteration ends, so
Redis takes one read and the node one system call for all of them, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...


class Stream(Protocol):
    def writelines(self, data: Iterable[bytes]) -> None: ...

    def is_closing(self) -> bool: ...


FLUSH_AT = 64 * 1024


class _Frames:
    __slots__ = ("frames", "size")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.size = 0

    def flush(self, transport: Transport) -> None:
        frames, self.frames, self.size = self.frames, [], 0
        if frames and not transport.is_closing():
            transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


_held: dict[Transport, _Frames] | None = None


def write(transport: Transport, data: bytes) -> None:
    """Write now, or at the end of the enclosing `coalesced()` block."""
    if _held is None:
        transport.write(data)
        return
    held = _held.get(transport)
    if held is None:
        held = _held[transport] = _Frames()
    held.frames.append(data)
    held.size += len(data)
    if held.size >= FLUSH_AT:
        held.flush(transport)


@contextlib.contextmanager
def coalesced() -> Iterator[None]:
    """Hold socket writes until the block ends (no await inside it); nested blocks join the outer."""
    global _held
    if _held is not None:
        yield
        return
    held: dict[Transport, _Frames] = {}
    _held = held
    try:
        yield
    finally:
        _held = None
        for transport, frames in held.items():
            frames.flush(transport)


class JoinedPerIteration:
    """One stream's writes, held until the current loop iteration ends and then written together,
    in order, followed by what `last` adds then (a barrier that must follow them all). A stream
    closed by then drops them, as it would have dropped the writes themselves (the caller's reader
    fails whoever waits on a reply, or reconnects and resubscribes)."""

    __slots__ = ("_held", "_last", "_scheduled", "stream")

    def __init__(self, stream: Stream, last: Callable[[], list[bytes]] | None = None) -> None:
        self.stream = stream
        self._last = last
        self._held: list[bytes] = []
        self._scheduled = False

    def write(self, chunks: Iterable[bytes]) -> None:
        """Hold `chunks` for this iteration's write (none: just make sure `last` is asked)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        self._held.extend(chunks)

    def _flush(self) -> None:
        self._scheduled = False
        held, self._held = self._held, []
        if self._last is not None:
            held += self._last()
        if held and not self.stream.is_closing():
            self.stream.writelines(held)
