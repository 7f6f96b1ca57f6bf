"""This process's sockets: who is connected here, channel subscriptions, and bounded delivery.

A `Conn` wraps one socket with a send queue bounded in size and drained by its own task, so a slow
reader costs only itself (it is closed with 4503 when its queue overflows), never the sender or
others. The hub carries out what each socket's session decides (`Session.deliver`, `gap`, `check`);
a frame fanned out to many sockets is encoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from kefu import jsonio, metrics
from kefu.broker.base import Broker
from kefu.core.routing import Envelope
from kefu.core.session import Action, CloseWith, Send, Session
from kefu.errors import Close

log = logging.getLogger(__name__)
T = TypeVar("T")

SendText = Callable[[str], Coroutine[Any, Any, None]]
WriteNow = Callable[[str], bool]  # write a frame at once if nothing is in the way; False: it was not
CloseFn = Callable[[int, str], Coroutine[Any, Any, None]]
_CLOSE = object()  # queue marker: close once the frames before it are sent


class Conn:
    """A frame goes straight to the socket (`write_now`) while nothing waits before it and the
    socket takes bytes: no task switch per frame. Otherwise it is queued, and a drain task (made
    only then, gone when the queue is empty) sends the queue in order through `send`; an idle
    socket holds no task of its own, and no queue (an empty deque is 0.7 KiB: made only while frames
    wait)."""

    __slots__ = ("_after_drain", "_close", "_closer", "_max_chars", "_max_frames", "_queue", "_queued_chars",
                 "_send", "_task", "_work", "_write_now", "closing", "last_received", "session")

    def __init__(self, session: Session, send: SendText, close: CloseFn, max_chars: int,
                 max_frames: int, last_received: Callable[[], float] | None = None,
                 write_now: WriteNow | None = None) -> None:
        self.session = session
        self.last_received = last_received
        self._send = send
        self._write_now = write_now
        self._close = close
        self._max_chars = max_chars
        self._max_frames = max_frames
        self._queue: deque[str | object] | None = None
        self._queued_chars = 0
        self._task: asyncio.Task[None] | None = None  # the drain, while frames wait or are in flight
        self.closing = False
        self._after_drain: tuple[int, str] = (Close.NORMAL, "")
        self._closer: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[Any] | asyncio.TimerHandle] | None = None

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run request work beside the receive loop; cancelled when the socket ends."""
        task = asyncio.create_task(work)
        if self._work is None:
            self._work = set()
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        """Call `fn` in `delay` seconds unless the socket has ended: a timer, where a task that
        sleeps would cost 15 µs and a kilobyte for as long as it waits."""
        if self._work is None:
            self._work = set()
        self._work.add(asyncio.get_running_loop().call_later(delay, fn))

    def apply(self, actions: Iterable[Action], encoded: dict[int, str] | None = None) -> None:
        """Carry out a session's decisions. `encoded` shares each frame's text between sockets."""
        for a in actions:
            if isinstance(a, Send):
                self.send_frame(a.frame, encoded)
            elif isinstance(a, CloseWith):
                self.close_soon(a.code, a.reason)

    def send_frame(self, frame: dict[str, Any], encoded: dict[int, str] | None = None) -> None:
        text = encoded.get(id(frame)) if encoded is not None else None
        if text is None:
            try:
                text = jsonio.dumps(frame)
            except ValueError as e:  # NaN or a lone surrogate: never mute the socket silently
                log.error("a frame for a %s socket could not be encoded (%s); closing it",
                          self.session.who.role, e)
                self.close_soon(Close.INTERNAL, "a frame could not be sent")
                return
            if encoded is not None:
                encoded[id(frame)] = text
        self.send_text(text)

    def send_text(self, text: str) -> None:
        """Send or queue without waiting; overflow means the client is not reading."""
        if self.closing:
            return
        if not self._draining() and self._write_now is not None and self._write_now(text):
            return
        if ((self._queue is not None and len(self._queue) >= self._max_frames)
                or self._queued_chars + len(text) > self._max_chars):
            self.close_soon(Close.SLOW_CONSUMER, "slow consumer")
            return
        self._queued_chars += len(text)
        self._enqueue(text)

    def _draining(self) -> bool:
        """Frames wait in the queue or are in flight: a new one must go behind them."""
        return self._task is not None and not self._task.done()

    def _enqueue(self, item: str | object) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        if not self._draining():
            self._task = asyncio.create_task(self._drain())

    def close_soon(self, code: int, reason: str) -> None:
        """Close after the frames already queued (an error frame before its 4429, say) are sent;
        a slow consumer is closed at once (its queue is what it cannot take)."""
        if self.closing:
            return
        self.closing = True
        metrics.CLOSES.labels(str(int(code))).inc()
        if code == Close.SLOW_CONSUMER:
            if self._task is not None:
                self._task.cancel()
            self._queue = None
            self._closer = asyncio.create_task(self._close(code, reason))
            return
        self._after_drain = (code, reason)
        self._enqueue(_CLOSE)

    async def _drain(self) -> None:
        try:
            while self._queue:
                item = self._queue.popleft()
                if item is _CLOSE:
                    await self._close(*self._after_drain)
                    return
                assert isinstance(item, str)
                self._queued_chars -= len(item)
                await self._send(item)
            self._queue = None  # empty: an idle socket keeps no deque
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the socket is gone; the handler's receive loop notices and cleans up
            log.debug("send failed: %s", e)
            self.closing = True  # nothing more is sent on it
            self._queue = None

    async def stop(self, grace: float = 5.0) -> None:
        """Finish a close already under way (its queued frames, then the close frame), else cut.
        Nothing is sent after it (an ack whose message settles later is dropped)."""
        for t in list(self._work or ()):
            t.cancel()
        pending = [t for t in (self._task, self._closer) if t is not None and not t.done()]
        was_closing, self.closing = self.closing, True
        if was_closing and pending:
            await asyncio.wait(pending, timeout=grace)
        for t in pending:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


class _ChannelLocks:
    """One lock per channel while anyone uses it, so a subscribe and an unsubscribe of the same
    channel never interleave; forgotten when the last user leaves (QR channels are short-lived).
    A socket joining or leaving a channel that others hold, while no change of it is under way,
    takes no lock: its subscription stays as it is (the hub's fast path, no await)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def busy(self, channel: str) -> bool:
        return channel in self._locks

    @contextlib.asynccontextmanager
    async def hold(self, channel: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(channel, (asyncio.Lock(), 0))
        self._locks[channel] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[channel]
            if users == 1:
                del self._locks[channel]
            else:
                self._locks[channel] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Hub:
    """Maps channels (user:<openid>, agent:<id>, agents, page:…) to this process's connections."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.channels: dict[str, set[Conn]] = {}
        self._locks = _ChannelLocks()
        # Sockets on no channel yet (a QR page before it binds): still swept for idleness, drained.
        self.unbound: set[Conn] = set()
        self._all: set[Conn] = set()

    async def add(self, conn: Conn) -> None:
        """Subscribe the socket's channels and return once the broker has them in effect (a publish
        from any node reaches the socket); if the broker refuses one, undo the others and raise."""
        chans = conn.session.channels
        done: list[str] = []
        try:
            for ch in chans:
                members = self.channels.get(ch)
                if members and not self._locks.busy(ch):  # subscribed, and no change under way
                    members.add(conn)
                else:
                    async with self._locks.hold(ch):
                        members = self.channels.get(ch)
                        if not members:
                            await self.broker.subscribe(ch)
                            members = self.channels[ch] = set()
                        members.add(conn)
                done.append(ch)
            if chans:
                await self.broker.settled()
        except BaseException:
            await self._leave(conn, done)
            raise
        if not chans:
            self.unbound.add(conn)
        if conn not in self._all:
            self._all.add(conn)
            metrics.connections(conn.session.who.role).inc()

    async def remove(self, conn: Conn) -> None:
        self.unbound.discard(conn)
        if conn in self._all:  # first: a `join` under way sees the socket is going
            self._all.discard(conn)
            metrics.connections(conn.session.who.role).dec()
        await self._leave(conn, conn.session.channels)

    async def join(self, conn: Conn, chans: Iterable[str]) -> None:
        """Subscribe more channels for a socket already here (a page joining a group while bound);
        the session lists them in `channels` first, so that `remove` takes them off again. A socket
        that is going (or gone) joins nothing. Like `add`, returns once the broker has them."""
        for ch in chans:
            async with self._locks.hold(ch):
                if conn not in self._all:
                    return
                members = self.channels.get(ch)
                if not members:
                    await self.broker.subscribe(ch)
                    members = self.channels[ch] = set()
                members.add(conn)
        self.unbound.discard(conn)
        await self.broker.settled()

    async def leave(self, conn: Conn, chans: Iterable[str]) -> None:
        """Unsubscribe some of a socket's channels (a page leaving a group); it stays here.
        Returns once a publish on them no longer counts this node (if no other socket holds them)."""
        await self._leave(conn, chans)
        await self.broker.settled()

    async def _leave(self, conn: Conn, chans: Iterable[str]) -> None:
        for ch in chans:
            members = self.channels.get(ch)
            if members is not None and len(members) > 1 and not self._locks.busy(ch):
                members.discard(conn)  # others stay subscribed: nothing to await
                continue
            async with self._locks.hold(ch):
                members = self.channels.get(ch)
                if members is None or conn not in members:
                    continue
                members.discard(conn)
                if not members:
                    del self.channels[ch]
                    with contextlib.suppress(Exception):  # a broker that is down has no subscription
                        await self.broker.unsubscribe(ch)

    def on_envelope(self, channel: str, env: Envelope) -> None:
        """Fan an envelope out to this process's sockets on `channel`."""
        conns = self.channels.get(channel)
        if not conns:
            return
        encoded: dict[int, str] = {}
        for conn in list(conns):
            conn.apply(conn.session.deliver(env), encoded)

    def on_gap(self) -> None:
        """The broker lost envelopes for a while: every socket here is told (or closed)."""
        for conn in list(self._all):
            conn.apply(conn.session.gap())

    def sweep(self, now: float, wall_now: float) -> None:
        for conn in list(self._all):
            if conn.last_received is not None:  # protocol-level pings count as life too
                conn.session.touch(conn.last_received())
            close = conn.session.check(now, wall_now)
            if close is not None:
                conn.close_soon(close.code, close.reason)

    def all_conns(self) -> set[Conn]:
        return set(self._all)

    def count(self) -> int:
        return len(self._all)
