"""Embedded journal: an in-memory queue committed in groups; a message is acked after its commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kefu.journal.base import JournalUnavailable, write_until_stored
from kefu.protocol import Message
from kefu.store.messages import MessageStore

log = logging.getLogger(__name__)


class LocalJournal:
    def __init__(self, store: MessageStore, batch: int, max_backoff: float, max_pending: int = 100_000):
        self.store = store
        self.batch = batch
        self.max_backoff = max_backoff
        self.max_pending = max_pending
        self._queue: list[tuple[Message, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def append(self, m: Message) -> None:
        if self._closed or len(self._queue) >= self.max_pending:
            raise JournalUnavailable("the message queue is full or shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((m, fut))
        self._wake.set()
        await asyncio.shield(fut)

    async def pending(self, openid: str | None, after: int) -> list[Message]:
        return [m for m, _ in self._queue if m.id > after and openid in (None, m.openid)]

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                # Everything queued while the last commit ran goes into the next one: group commit.
                chunk = self._queue[: self.batch]
                await write_until_stored(self.store, [m for m, _ in chunk], self.max_backoff)
                del self._queue[: len(chunk)]
                for _, fut in chunk:
                    if not fut.done():
                        fut.set_result(None)
            if self._closed:
                return

    async def stop(self, timeout: float) -> None:
        self._closed = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.error("shutdown: %d accepted messages could not be stored", len(self._queue))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
