"""What both journals share: the interface, the draft of a message, and the retrying batch write.

A journal is where a message becomes durable. `accept` returns only once the message is durable
*and* has been relayed, with the id it is stored under — or raises `Unavailable` and the message
exists nowhere. Dedupe by cmid is decided in the same atomic step that makes the message durable,
so a duplicate is only ever acked as one of something durable. docs/architecture.md gives the
argument for each backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kefu import jsonio, metrics
from kefu.core.session import Accepted
from kefu.errors import is_infrastructure
from kefu.protocol import Message
from kefu.store.batch import Written

log = logging.getLogger(__name__)
WRITE_TIMEOUT = 15.0


def draft(**fields: Any) -> Message:
    """A message before the journal gives it its id (0 until then)."""
    return Message(id=0, **fields)


def wire_tail(m: Message) -> str:
    """A message's wire JSON after its id: `'{"id":' + str(id) + ',' + tail` is `to_wire()` (the
    Redis accept script splices the id in)."""
    wire = m.to_wire()
    del wire["id"]
    return jsonio.dumps(wire)[1:]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Accepted messages not yet in the database, and the highest id the snapshot vouches for:
    every message with an id at or below `cap` is in `pending` or already stored (None: no cap,
    the database alone is complete)."""

    cap: int | None
    pending: list[Message]


class Journal(Protocol):
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None:
        """Stop taking messages and flush what was accepted (within `timeout` seconds)."""
        ...
    def submit(self, draft: Message, origin: str) -> asyncio.Future[Accepted]:
        """Start making `draft` durable under a fresh id and relaying it; the future resolves once
        both are done, or to the earlier message of the same sender and cmid, or fails with
        `Unavailable` when neither can be done (also raised at once when the journal is closed or
        full). A future, not a coroutine: a socket's ack is sent from its callback, with no task
        per message. Never cancel it: other waiters (a resend joined to it) share it."""
        ...
    async def accept(self, draft: Message, origin: str) -> Accepted:
        """`submit`, awaited; cancelling the caller leaves the message's fate unchanged."""
        return await asyncio.shield(self.submit(draft, origin))
    async def snapshot(self, openid: str | None, after: int) -> Snapshot: ...


def counts_agents(m: Message) -> bool:
    """Whose receipt makes `m` delivered: agents' for a user's message and for agent-only kinds
    (a note), else the user's."""
    return m.sender == "user" or not m.for_user


def delivered_by(m: Message, to_user: int, to_agents: int) -> bool:
    return (to_agents if counts_agents(m) else to_user) > 0


async def write_until_stored(write: Callable[[], Awaitable[Written]], count: int, max_backoff: float,
                             stopping: asyncio.Event | None = None) -> Written | None:
    """Run a batch write, retrying with backoff while the database is unavailable. None if told
    to stop first. A write that fails for any other reason (a bug) is retried too, and logged with
    its traceback once: dropping the batch would lose acked messages."""
    delay = 0.1
    logged_bug = False
    while True:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
            with metrics.WRITE_SECONDS.time():
                async with asyncio.timeout(WRITE_TIMEOUT):
                    written = await write()
            metrics.MESSAGES_STORED.inc(count)
            if delay > 0.1:
                log.info("stored %d messages after the database came back", count)
            return written
        except asyncio.CancelledError:
            raise
        except Exception as e:
            metrics.WRITE_ERRORS.inc()
            if is_infrastructure(e):
                log.warning("storing %d messages failed (%s); retrying in %.1fs", count, e, delay)
            elif not logged_bug:
                logged_bug = True
                log.exception("storing %d messages failed; retrying in %.1fs", count, delay)
        if stopping is not None and stopping.is_set():
            return None
        await asyncio.sleep(delay)
        delay = min(max_backoff, delay * 2)

