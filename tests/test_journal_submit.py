"""The embedded journal's futures, driven without sockets or a database: a resend answers with
its original's outcome — at once once it is durable, when it settles while it is still waiting
for its commit — and a closed journal refuses new messages but still answers resends."""

from __future__ import annotations

import asyncio

import pytest

from kefu.broker.local import LocalBroker
from kefu.errors import Unavailable
from kefu.journal.base import draft
from kefu.journal.embedded import EmbeddedJournal
from kefu.protocol import Message
from kefu.store.batch import Written


class GatedStore:
    """Holds every batch write until `gate` opens; reports the ids in `collide` as taken."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.collide: set[int] = set()
        self.written: list[int] = []

    def send(self, rows: list[tuple[Message, bool]], since: int) -> asyncio.Future[Written]:
        return asyncio.ensure_future(self.write(rows, since))

    def abandon(self) -> None:
        pass

    async def max_id(self) -> int:
        return 0

    async def start(self) -> None:
        pass

    async def write(self, rows: list[tuple[Message, bool]], since: int) -> Written:
        await self.gate.wait()
        ids = [m.id for m, _ in rows]
        self.written += [i for i in ids if i not in self.collide]
        return Written(collisions=[i for i in ids if i in self.collide])


def _message(cmid: str, text: str = "hi") -> Message:
    return draft(ts=1_700_000_000_000, openid="o-1", sender="user", msg=text, cmid=cmid)


async def _journal(store: GatedStore, batch: int = 100) -> EmbeddedJournal:
    broker = LocalBroker()
    await broker.start(lambda channel, env: None, lambda: None)
    journal = EmbeddedJournal(store, broker, batch=batch, max_backoff=0.1, dedupe_ttl=60)  # type: ignore[arg-type]
    await journal.start()
    return journal


async def test_a_resend_waiting_on_its_original_settles_with_it_as_a_duplicate():
    store = GatedStore()
    journal = await _journal(store)
    first = journal.submit(_message("c-1"), "")
    resend = journal.submit(_message("c-1"), "")
    other = journal.submit(_message("c-2"), "")
    await asyncio.sleep(0.05)
    assert not (first.done() or resend.done() or other.done())  # nothing is answered before its commit

    store.gate.set()
    original, dup, second = await asyncio.gather(first, resend, other)
    assert (original.message.id, original.dup) == (1, False)
    assert (dup.message.id, dup.message.ts, dup.dup) == (1, original.message.ts, True)
    assert (second.message.id, second.dup) == (2, False)
    assert store.written == [1, 2]  # the resend took no id and no row

    later = journal.submit(_message("c-1"), "")
    assert later.done() and later.result().dup and later.result().message.id == 1  # from the cache
    await journal.stop(1)


async def test_a_resend_of_a_message_that_failed_fails_too_and_a_closed_journal_still_answers_resends():
    store = GatedStore()
    store.collide = {1}
    journal = await _journal(store)
    first = journal.submit(_message("c-1"), "")
    resend = journal.submit(_message("c-1"), "")
    stored = journal.submit(_message("c-2"), "")
    store.gate.set()
    for fut in (first, resend):
        with pytest.raises(Unavailable):
            await fut
    assert (await stored).message.id == 2

    retry = journal.submit(_message("c-1"), "")  # the failed one left no cache entry behind
    assert not (await retry).dup and (await retry).message.id == 3

    await journal.stop(1)
    with pytest.raises(Unavailable):
        journal.submit(_message("c-3"), "")
    assert journal.submit(_message("c-2"), "").result().dup


async def test_settled_entries_leave_the_cache_past_the_dedupe_window_and_over_the_cap():
    store = GatedStore()
    store.gate.set()
    broker = LocalBroker()
    await broker.start(lambda channel, env: None, lambda: None)
    journal = EmbeddedJournal(store, broker, batch=100, max_backoff=0.1, dedupe_ttl=60,  # type: ignore[arg-type]
                              cache_max=3)
    await journal.start()
    t0 = 1_700_000_000_000

    def at(cmid: str, ts: int) -> Message:
        return draft(ts=ts, openid="o-1", sender="user", msg="hi", cmid=cmid)

    first = await journal.submit(at("c-1", t0), "")
    assert journal.submit(at("c-1", t0 + 59_000), "").result().dup  # inside the window: from the cache
    again = await journal.submit(at("c-1", t0 + 61_000), "")  # past it: evicted, a new message
    assert not again.dup and again.message.id > first.message.id

    for i in range(2, 8):
        await journal.submit(at(f"c-{i}", t0 + 61_000), "")
    assert len(journal._cache) <= 3 + 1  # over the cap, the next message evicts at once
    await journal.stop(1)


async def test_the_pending_gauge_counts_what_waits_for_its_commit():
    from kefu import metrics
    store = GatedStore()
    journal = await _journal(store)
    before = metrics.JOURNAL_PENDING._value.get()
    futures = [journal.submit(_message(f"c-{i}"), "") for i in range(3)]
    await asyncio.sleep(0)  # counted once per loop iteration
    assert metrics.JOURNAL_PENDING._value.get() == before + 3
    store.gate.set()
    await asyncio.gather(*futures)
    assert metrics.JOURNAL_PENDING._value.get() == before
    await journal.stop(1)


class SteppedStore(GatedStore):
    """Commits one batch per `step()`, and records each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = asyncio.Semaphore(0)
        self.sizes: list[int] = []

    async def write(self, rows: list[tuple[Message, bool]], since: int) -> Written:
        self.sizes.append(len(rows))
        await self.permits.acquire()
        return Written()

    async def step(self, then: int) -> None:
        """Let the batch in hand commit; return once the next batch has gone to the writer
        (`then` batches in all)."""
        self.permits.release()
        for _ in range(100):
            if len(self.sizes) >= then:
                return
            await asyncio.sleep(0.01)


async def test_while_one_batch_is_relayed_the_next_takes_half_of_what_waits():
    store = SteppedStore()
    journal = await _journal(store, batch=500)
    first = [journal.submit(_message(f"a-{i}"), "") for i in range(45)]
    await asyncio.sleep(0.05)
    assert store.sizes == [45]  # from idle, the whole queue
    rest = [journal.submit(_message(f"b-{i}"), "") for i in range(155)]
    await store.step(then=2)
    assert store.sizes == [45, 100], "half of the 45 settling and the 155 waiting, not all 155"
    await store.step(then=3)
    assert store.sizes == [45, 100, 55]
    later = [journal.submit(_message(f"c-{i}"), "") for i in range(20)]  # a light load is not split
    await store.step(then=4)
    assert store.sizes == [45, 100, 55, 20]
    store.permits.release()
    await asyncio.gather(*first, *rest, *later)
    ids = [f.result().message.id for f in (*first, *rest, *later)]
    assert ids == list(range(1, 221))
    await journal.stop(1)


class FlakyStore(GatedStore):
    """Fails its first write (the database went away), then stores."""

    def __init__(self) -> None:
        super().__init__()
        self.gate.set()
        self.failures = 1

    async def write(self, rows: list[tuple[Message, bool]], since: int) -> Written:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database went away")
        return await super().write(rows, since)


async def test_a_failed_batch_is_retried_before_anything_after_it_is_written():
    store = FlakyStore()
    journal = await _journal(store)
    first = [journal.submit(_message(f"a-{i}"), "") for i in range(3)]
    await asyncio.sleep(0.02)  # the first batch failed; its retry waits for the backoff
    later = [journal.submit(_message(f"b-{i}"), "") for i in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*first, *later), 5)
    assert [r.message.id for r in results] == [1, 2, 3, 4, 5, 6]
    assert store.written == [1, 2, 3, 4, 5, 6], "the retried batch is committed before the next"
    await journal.stop(1)


async def test_a_batch_the_store_refuses_to_take_is_retried_not_dropped():
    store = GatedStore()
    store.gate.set()
    refusals = [RuntimeError("a bug in the hand-over")]

    def send(rows: list[tuple[Message, bool]], since: int) -> asyncio.Future[Written]:
        if refusals:
            raise refusals.pop()
        return asyncio.ensure_future(store.write(rows, since))

    store.send = send  # type: ignore[method-assign]
    journal = await _journal(store)
    futures = [journal.submit(_message(f"c-{i}"), "") for i in range(3)]
    acked = await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert [a.message.id for a in acked] == [1, 2, 3] and store.written == [1, 2, 3]
    await journal.stop(1)
