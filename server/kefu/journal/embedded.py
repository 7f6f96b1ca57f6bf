"""Embedded journal (SQLite, one process): group commit, then relay, then ack.

Accepted messages wait in memory; the writer commits them a batch at a time (one batch in its
hands, the next sent as the last one's commit is answered), and only then are they published and
acked, batch after batch in id order; a batch whose write failed is retried before any later one
is sent. So every id a client ever sees is committed: a kill -9 loses only messages nobody was
told about, and their ids may be handed out again safely.

Dedupe: a cache of recent cmids answers most resends at once (and joins a resend to its original
while that is still waiting for its commit); the cache is only a shortcut — the writer looks the
batch's cmids up in the same transaction that inserts it (within KEFU_DEDUPE_TTL), so dedupe holds
across restarts and for entries the bounded cache has dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict, deque

from kefu import metrics
from kefu.broker.local import LocalBroker
from kefu.coalesce import coalesced
from kefu.core.routing import AGENTS, audiences, message_envelope
from kefu.core.session import Accepted
from kefu.errors import Unavailable
from kefu.journal.base import (
    WRITE_TIMEOUT,
    Journal,
    Snapshot,
    counts_agents,
    delivered_by,
    write_until_stored,
)
from kefu.protocol import Message, user_channel
from kefu.store.batch import Written
from kefu.store.messages import MessageStore

log = logging.getLogger(__name__)
EVICT_EVERY_MS = 1000
UNSPLIT = 32  # a queue up to twice this goes to the writer whole

Key = tuple[str, str]
# A settled message in the dedupe cache: (id, ts, delivered), what a resend is acked with. A tuple
# of numbers, which the cyclic garbage collector stops tracking: a full cache (200 000 entries) of
# objects would make each full collection walk them all, a pause of a tenth of a second.
Settled = tuple[int, int, bool]
# An accepted message waiting for its commit: the draft with its id, where it came from, its ack.
Pending = tuple[Message, str, asyncio.Future[Accepted]]


class EmbeddedJournal(Journal):
    def __init__(self, store: MessageStore, broker: LocalBroker, batch: int, max_backoff: float,
                 dedupe_ttl: int, max_pending: int = 100_000, cache_max: int = 200_000) -> None:
        self.store = store
        self.broker = broker
        self.batch = batch
        self.max_backoff = max_backoff
        self.dedupe_ms = dedupe_ttl * 1000
        self.max_pending = max_pending
        self.cache_max = cache_max
        self._next = 0
        self._queue: list[Pending] = []
        self._writing: list[Pending] = []  # the batch the writer holds
        self._retry: tuple[list[Pending], list[tuple[Message, bool]]] | None = None  # its write failed
        self._committed: deque[tuple[list[Pending], Written]] = deque()  # to relay and ack, in order
        self._cache: OrderedDict[Key, asyncio.Future[Accepted] | Settled] = OrderedDict()
        self._evict_after = 0  # the next message at or after this time (ms) evicts expired entries
        self._uncounted = 0  # accepted this loop iteration, not yet in the pending gauge
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Nothing above the stored maximum was ever relayed or acked, so counting on from it is safe.
        self._next = await self.store.max_id()
        await self.store.start()
        self._task = asyncio.create_task(self._run())

    def submit(self, draft: Message, origin: str) -> asyncio.Future[Accepted]:
        key = (draft.sender_key, draft.cmid) if draft.cmid is not None else None
        fut: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        if key is not None:
            if draft.ts >= self._evict_after or len(self._cache) > self.cache_max:
                self._evict(draft.ts)
            hit = self._cache.get(key)
            if isinstance(hit, tuple):
                fut.set_result(_duplicate(draft, *hit))
                return fut
            if hit is not None:  # the original still waits for its commit: answer when it does
                hit.add_done_callback(lambda original: _resolve_as_dup(fut, original))
                return fut
        if self._closed or len(self._queue) >= self.max_pending:
            raise Unavailable("the server is shutting down or its queue is full; resend later")
        self._next += 1
        self._queue.append((draft.with_id(self._next), origin, fut))
        self._uncounted += 1
        if self._uncounted == 1:  # once per loop iteration, not once per message
            asyncio.get_running_loop().call_soon(self._step_ended)
        if key is not None:
            self._cache[key] = fut
        return fut

    def _step_ended(self) -> None:
        """What this loop iteration accepted: counted as pending, and sent if the writer is idle
        (else it goes with the next batch, when the writer answers)."""
        metrics.JOURNAL_PENDING.inc(self._uncounted)
        self._uncounted = 0
        self._send_next()

    def _evict(self, now_ms: int) -> None:
        """Drop cache entries past the dedupe window or over the cap; never one still waiting
        for its commit (a resend must join it), and those are bounded by `max_pending`. Run when
        the cache is over its cap, else at most once a second (`submit`): an entry outlives the
        window by under a second, and a message costs one comparison instead of a walk."""
        self._evict_after = now_ms + EVICT_EVERY_MS
        while self._cache:
            key, entry = next(iter(self._cache.items()))
            if not isinstance(entry, tuple):
                break
            if entry[1] > now_ms - self.dedupe_ms and len(self._cache) <= self.cache_max:
                break
            del self._cache[key]

    async def snapshot(self, openid: str | None, after: int) -> Snapshot:
        return Snapshot(cap=None, pending=[])  # nothing is relayed before it is committed

    async def _run(self) -> None:
        """Relay and ack each committed batch, in order; retry a batch whose write failed."""
        while True:
            while self._committed:
                chunk, written = self._committed.popleft()
                with coalesced():  # the batch's frames to one agent go out in one write
                    for m, origin, fut in chunk:
                        self._settle(m, origin, fut, written)
                metrics.JOURNAL_PENDING.dec(len(chunk))
            if self._retry is not None:
                chunk, rows = self._retry
                since = int(time.time() * 1000) - self.dedupe_ms
                stored = await write_until_stored(functools.partial(self.store.write, rows, since),
                                                  len(rows), self.max_backoff)
                assert stored is not None  # no stop signal: retried until stored
                self._retry = None
                self._committed.append((chunk, stored))
                self._send_next(settling=len(chunk))
                continue
            if self._closed and not self._queue and not self._writing:
                return
            self._send_next()
            await self._wake.wait()
            self._wake.clear()

    def _send_next(self, settling: int = 0) -> None:
        """Hand the next batch to the writer, unless one is there or a failed one awaits its
        retry (commits stay in id order).

        It is called as the last batch's commit is answered, before that batch is relayed, so
        the writer never waits for the relay. While a committed batch of `settling` messages is
        relayed, the next one takes half of what the two hold (at least `UNSPLIT`, at most
        `batch`). The batches in turn then stay even, so the writer's commit of one and the
        relay of the other take about as long. Left to itself, a closed loop keeps whatever split
        it fell into (155 and 45 of 200 senders, in turn): the writer waits through the short
        one and the event loop through the long."""
        if self._writing or self._retry is not None or not self._queue:
            return
        size = self.batch
        if settling:
            size = min(size, max(UNSPLIT, (len(self._queue) + settling + 1) // 2))
        chunk = self._writing = self._queue[:size]
        del self._queue[: len(chunk)]
        rows = [(m, self._online(m)) for m, _, _ in chunk]
        try:
            fut = self.store.send(rows, int(time.time() * 1000) - self.dedupe_ms)
        except Exception:  # a bug: retried (and logged) like a failed write, never dropped
            log.exception("sending %d messages to the writer failed; retrying", len(rows))
            self._writing = []
            self._retry = (chunk, rows)
            self._wake.set()
            return
        hung = asyncio.get_running_loop().call_later(WRITE_TIMEOUT, self._hung, fut)
        fut.add_done_callback(functools.partial(self._written, chunk, rows, time.perf_counter(), hung))

    def _hung(self, fut: asyncio.Future[Written]) -> None:
        """No answer in time: the writer is given up (its process killed) and the batch retried."""
        self.store.abandon()
        fut.cancel()

    def _written(self, chunk: list[Pending], rows: list[tuple[Message, bool]], sent_at: float,
                 hung: asyncio.TimerHandle, fut: asyncio.Future[Written]) -> None:
        hung.cancel()
        self._writing = []
        error = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or error is not None:
            metrics.WRITE_ERRORS.inc()
            log.warning("storing %d messages failed (%s); retrying", len(rows), error or "no answer in time")
            self._retry = (chunk, rows)
        else:
            metrics.WRITE_SECONDS.observe(time.perf_counter() - sent_at)
            metrics.MESSAGES_STORED.inc(len(rows))
            self._committed.append((chunk, fut.result()))
            self._send_next(settling=len(chunk))
        self._wake.set()

    def _settle(self, m: Message, origin: str, fut: asyncio.Future[Accepted], written: Written) -> None:
        """Relay a committed message (or answer it as the duplicate the writer found), then ack."""
        key = (m.sender_key, m.cmid) if m.cmid is not None else None
        earlier = written.dups.get(key) if key is not None else None
        if earlier is not None:
            result = _duplicate(m, earlier.id, earlier.ts, earlier.delivered)
        elif m.id in written.collisions:  # cannot happen with one writer; refuse rather than lie
            if key is not None:
                self._cache.pop(key, None)
            fut.set_exception(Unavailable("message not stored, resend it"))
            return
        else:
            user_ch, agents_ch = audiences(m)
            channels = (user_ch, agents_ch) if user_ch else (agents_ch,)
            counts = self.broker.publish_now(channels, message_envelope(m, origin))
            to_user, to_agents = (counts[0], counts[1]) if user_ch else (0, counts[0])
            result = Accepted(m, delivered_by(m, to_user, to_agents))
        if key is not None:
            self._cache[key] = (result.message.id, result.message.ts, result.delivered)
        if not fut.done():
            fut.set_result(result)

    def _online(self, m: Message) -> bool:
        """Whether a recipient is connected now: stored as the message's `delivered`, for a
        duplicate acked after a restart (relay follows the commit at once, in this process)."""
        return self.broker.here(AGENTS if counts_agents(m) else user_channel(m.openid))

    async def stop(self, timeout: float) -> None:
        self._closed = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()  # and with it the batch being stored
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            held = [p for chunk, _ in self._committed for p in chunk] + self._writing
            held += self._retry[0] if self._retry is not None else []
            unsettled = [fut for _, _, fut in held + self._queue if not fut.done()]
            log.error("shutdown: %d accepted messages could not be stored (they were not acked)",
                      len(unsettled))
            for fut in unsettled:
                fut.set_exception(Unavailable("server shutting down; resend it"))


def _duplicate(resend: Message, msg_id: int, ts: int, delivered: bool) -> Accepted:
    """A resend answered as the stored message it repeats (its id, time and delivery)."""
    return Accepted(resend.with_id(msg_id, ts), delivered, dup=True)


def _resolve_as_dup(fut: asyncio.Future[Accepted], original: asyncio.Future[Accepted]) -> None:
    """A resend joined to its original: the same outcome, as a duplicate."""
    if fut.done():
        return
    if original.cancelled():
        fut.set_exception(Unavailable("message not stored, resend it"))
    elif (e := original.exception()) is not None:
        fut.set_exception(e)
    else:
        result = original.result()
        fut.set_result(Accepted(result.message, result.delivered, dup=True))
