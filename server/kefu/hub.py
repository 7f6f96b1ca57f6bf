"""This process's sockets: who is connected here, channel subscriptions, and bounded delivery.

A `Conn` wraps one socket with a bounded send queue drained by its own task, so a slow reader
costs only itself (it is closed with 4503 when its queue overflows), never the sender or others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from kefu import metrics
from kefu.broker.base import Broker
from kefu.core.routing import Envelope
from kefu.core.session import CLOSE_SLOW_CONSUMER, Session
from kefu.protocol import dumps

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]


class Conn:
    def __init__(self, session: Session, send: SendText, close: CloseFn, queue_size: int) -> None:
        self.session = session
        self._send = send
        self._close = close
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self._task = asyncio.create_task(self._drain())
        self.closing = False
        self._after_drain = (1000, "")
        self._closer: asyncio.Task | None = None

    def push(self, frame: dict[str, Any] | str) -> None:
        """Queue a frame without waiting; overflow means the client is not reading."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(frame if isinstance(frame, str) else dumps(frame))
        except asyncio.QueueFull:
            self.close_soon(CLOSE_SLOW_CONSUMER, "slow consumer")

    def close_soon(self, code: int, reason: str) -> None:
        """Close after the frames already queued (an error frame before its 4429, say) are sent."""
        if self.closing:
            return
        self.closing = True
        metrics.CLOSES.labels(str(code)).inc()
        if code == CLOSE_SLOW_CONSUMER:
            self._task.cancel()
            self._closer = asyncio.create_task(self._close(code, reason))
            return
        self._after_drain = (code, reason)
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self._task.cancel()
            self._closer = asyncio.create_task(self._close(code, reason))

    async def _drain(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                if text is None:
                    code, reason = self._after_drain
                    await self._close(code, reason)
                    return
                await self._send(text)
        except asyncio.CancelledError:
            raise
        except Exception:
            return  # the socket is gone; the handler's receive loop notices and cleans up

    async def stop(self, grace: float = 5.0) -> None:
        """Finish a close already under way (its queued frames, then the close frame), else cut."""
        pending = [t for t in (self._task, self._closer) if t is not None and not t.done()]
        if self.closing and pending:
            await asyncio.wait(pending, timeout=grace)
        for t in pending:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


class Hub:
    """Maps channels (user:<openid>, agent:<id>, agents) to this process's connections."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.channels: dict[str, set[Conn]] = defaultdict(set)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Sockets on no channel yet (a QR page before it binds): still swept for idleness, drained.
        self.unbound: set[Conn] = set()

    async def add(self, conn: Conn) -> None:
        chans = conn.session.channels
        if not chans:
            self.unbound.add(conn)
        for ch in chans:
            async with self._locks[ch]:
                if not self.channels[ch]:
                    await self.broker.subscribe(ch)
                self.channels[ch].add(conn)
        metrics.CONNECTIONS.labels(conn.session.who.role).inc()

    async def remove(self, conn: Conn) -> None:
        self.unbound.discard(conn)
        for ch in conn.session.channels:
            async with self._locks[ch]:
                members = self.channels.get(ch)
                if members is None or conn not in members:
                    continue
                members.discard(conn)
                if not members:
                    del self.channels[ch]
                    with contextlib.suppress(Exception):
                        await self.broker.unsubscribe(ch)
            self._drop_lock(ch)
        metrics.CONNECTIONS.labels(conn.session.who.role).dec()

    def on_broker_message(self, channel: str, raw: str) -> None:
        """Fan an envelope out to this process's sockets on `channel`."""
        conns = self.channels.get(channel)
        if not conns:
            return
        env = Envelope.loads(raw)
        text: str | None = None
        for conn in list(conns):
            if conn.session.kicked_by(env):
                conn.close_soon(4401, "logged out")
                continue
            frame = conn.session.frame_for(env)
            if frame is not None:
                text = text or dumps(frame)
                conn.push(text)

    def _drop_lock(self, ch: str) -> None:
        """Forget an idle channel's lock, or short-lived channels (QR pages) would pile up locks.
        Safe without awaiting: nobody holds or waits for it, and `async with` takes it at once."""
        lock = self._locks.get(ch)
        if ch not in self.channels and lock is not None and not lock.locked() \
                and not getattr(lock, "_waiters", None):
            del self._locks[ch]

    def all_conns(self) -> set[Conn]:
        return {c for members in self.channels.values() for c in members} | self.unbound

    def count(self) -> int:
        return len(self.all_conns())
