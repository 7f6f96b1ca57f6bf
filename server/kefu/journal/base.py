"""What every journal shares: the interface and the retrying batch write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from kefu import metrics
from kefu.protocol import Message
from kefu.store.messages import MessageStore

log = logging.getLogger(__name__)
WRITE_TIMEOUT = 15.0


class JournalUnavailable(Exception):
    """The message could not be made durable; the sender gets `unavailable` and no ack."""


class Journal(Protocol):
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None:
        """Stop taking messages and flush what was accepted (within `timeout` seconds)."""
        ...
    async def append(self, m: Message) -> None:
        """Return once `m` is durable: it will reach the database even if this process dies."""
        ...
    async def pending(self, openid: str | None, after: int) -> list[Message]:
        """Accepted messages the writer has not stored yet, so sync can see them too."""
        ...


async def write_until_stored(store: MessageStore, batch: Sequence[Message], max_backoff: float,
                             stopping: asyncio.Event | None = None) -> bool:
    """Insert `batch`, retrying with backoff while the database is down. False if told to stop."""
    delay = 0.1
    while True:
        try:
            with metrics.WRITE_SECONDS.time():
                await asyncio.wait_for(store.insert_batch(batch), WRITE_TIMEOUT)
            metrics.MESSAGES_STORED.inc(len(batch))
            return True
        except asyncio.CancelledError:
            raise
        except Exception as e:
            metrics.WRITE_ERRORS.inc()
            log.warning("storing %d messages failed (%s); retrying in %.1fs", len(batch), e, delay)
        if stopping is not None and stopping.is_set():
            return False
        await asyncio.sleep(delay)
        delay = min(max_backoff, delay * 2)
