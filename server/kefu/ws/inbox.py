"""The messages one upgraded socket has received, for its one reader.

Sanic hands each chunk of bytes to a new task, which takes a lock and passes every frame through
its frame assembler, and its `recv` makes another task and a future per message: a few tasks and
futures per frame, and one task parked on every idle socket. The socket's protocol
(ws/transport.py) instead parses a chunk in `data_received` and puts its data frames here, and the
receive loop awaits `get` — one future, only while it waits.

Frames come from websockets' parser, which has already checked the framing (continuations only
after a fragment, control frames whole) and the size of the whole message (`max_size`), so this
only joins fragments and decodes text. A text message that is not UTF-8 raises `UnicodeDecodeError`
from `put` (the protocol closes the socket with 1007).

Backpressure: past `depth` waiting messages the socket stops reading (`hold(True)`), and reads
again once the reader has taken half of them, so a client that sends faster than its frames are
handled fills its own TCP window, not kefu's memory.
"""

from __future__ import annotations

import asyncio
import codecs
from collections import deque
from collections.abc import Callable

from websockets.frames import Frame, Opcode

Message = str | bytes
_UTF8 = codecs.getincrementaldecoder("utf-8")


class Inbox:
    __slots__ = ("_decoder", "_depth", "_ended", "_held", "_hold", "_parts", "_ready", "_waiter")

    def __init__(self, hold: Callable[[bool], None], depth: int = 16) -> None:
        self._hold = hold
        self._depth = depth
        # Made only while messages wait: an empty deque is 0.7 KiB on every idle socket.
        self._ready: deque[Message] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._held = False
        self._parts: list[Message] | None = None  # a fragmented message so far
        self._decoder: codecs.IncrementalDecoder | None = None

    def put(self, frame: Frame) -> None:
        """Take a data frame (TEXT, BINARY or CONT; others are ignored)."""
        if self._ended:
            return
        op, data = frame.opcode, bytes(frame.data)  # bytes(): the same object when it is bytes
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if frame.fin:  # the usual case: a whole message in one frame
                self._ready_one(data.decode() if op is Opcode.TEXT else data)
                return
            self._decoder = _UTF8() if op is Opcode.TEXT else None
            self._parts = []
        elif op is not Opcode.CONT or self._parts is None:
            return
        parts = self._parts
        parts.append(self._decoder.decode(data, frame.fin) if self._decoder else data)
        if frame.fin:
            self._ready_one("".join(parts) if self._decoder else b"".join(parts))  # type: ignore[arg-type]
            self._parts, self._decoder = None, None

    def put_text(self, text: str) -> None:
        """Take a whole text message the transport has already unmasked and decoded."""
        if not self._ended:
            self._ready_one(text)

    def _ready_one(self, message: Message) -> None:
        if self._ready is None:
            self._ready = deque()
        self._ready.append(message)
        if not self._held and len(self._ready) > self._depth:
            self._held = True
            self._hold(True)
        self._wake()

    def end(self) -> None:
        """No more messages: the peer closed, the connection is gone, or kefu failed it. What is
        still waiting is dropped (nothing can be answered on a closing socket)."""
        self._ended = True
        self._ready = None
        self._parts = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Message | None:
        """The next message, or None once the inbox has ended."""
        while not self._ready:
            if self._ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._ready.popleft()
        if not self._ready:
            self._ready = None
        if self._held and len(self._ready or ()) <= self._depth // 2:
            self._held = False
            self._hold(False)
        return message

    @property
    def ended(self) -> bool:
        return self._ended
