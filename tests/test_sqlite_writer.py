"""The embedded writer's own process (`store/sqlite_writer.py`): an answer means committed; a
process that dies or an exchange that is abandoned fails its batch as infrastructure trouble (the
journal retries it), and the next batch runs in a fresh process that never takes the abandoned
batch's answer for its own; the process outlives SIGTERM and SIGINT (its server may still be
flushing) and exits once its server closes its end."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kefu.config import Settings
from kefu.errors import is_infrastructure
from kefu.journal.base import draft
from kefu.migrate import upgrade
from kefu.store.batch import MessageRow
from kefu.store.messages import message_row
from kefu.store.sqlite_writer import Skipped, SqliteWriter

T0 = 1_700_000_000_000


def batch(first: int, n: int, ids_from: int | None = None) -> list[MessageRow]:
    """Messages c<first>… under ids from `ids_from` (default: the same numbers)."""
    at = first if ids_from is None else ids_from
    return [message_row(draft(ts=T0 + i, openid="o_1", sender="user", msg=f"m{i}", agent_id=None,
                              agent=None, cmid=f"c{i}").with_id(at + i - first), False)
            for i in range(first, first + n)]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    upgrade(settings)
    return Path(settings.sync_database_url.split(":///", 1)[1])


@pytest.fixture
async def writer(database: Path) -> AsyncIterator[SqliteWriter]:
    w = SqliteWriter(f"sqlite:///{database}")
    await w.start()
    try:
        yield w
    finally:
        await w.close()


def stored(database: Path) -> list[int]:
    with sqlite3.connect(database) as db:
        return [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]


def child_pid(w: SqliteWriter) -> int:
    assert w._child is not None and w._child.alive and w._child.pid is not None
    return w._child.pid


async def gone(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_an_answer_means_committed_and_a_replay_changes_nothing(writer: SqliteWriter, database: Path):
    assert (await writer.write(batch(1, 50), T0)).dups == {}
    assert stored(database) == list(range(1, 51))
    again = await writer.write(batch(1, 50), T0)  # the journal's retry of a batch that was committed
    assert (again.dups, again.collisions) == ({}, []) and stored(database) == list(range(1, 51))
    # the same cmids under new ids: answered with the stored messages, not stored again
    resent = await writer.write(batch(1, 3, ids_from=100), T0)
    assert {k: e.id for k, e in resent.dups.items()} == {("u:o_1", "c1"): 1, ("u:o_1", "c2"): 2,
                                                         ("u:o_1", "c3"): 3}
    assert stored(database) == list(range(1, 51))


async def test_a_killed_process_fails_its_batch_as_unavailable_and_the_next_one_gets_a_fresh_process(
        writer: SqliteWriter, database: Path):
    await writer.write(batch(1, 5), T0)
    with sqlite3.connect(database, isolation_level=None) as lock:
        lock.execute("BEGIN IMMEDIATE")  # the writer's batch waits for SQLite's write lock
        pending = asyncio.create_task(writer.write(batch(6, 5), T0))
        await asyncio.sleep(0.3)
        pid = child_pid(writer)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ConnectionError) as failed:
            await pending
        assert is_infrastructure(failed.value)
        lock.execute("ROLLBACK")
    await writer.write(batch(6, 5), T0)  # the retry
    assert child_pid(writer) != pid and stored(database) == list(range(1, 11))

    os.kill(child_pid(writer), signal.SIGKILL)  # between batches: noticed at the next one
    await asyncio.sleep(0.3)
    await writer.write(batch(11, 1), T0)
    assert stored(database) == list(range(1, 12))


async def test_an_abandoned_exchange_never_answers_a_later_batch(writer: SqliteWriter, database: Path):
    await writer.write(batch(1, 3), T0)
    with sqlite3.connect(database, isolation_level=None) as lock:
        lock.execute("BEGIN IMMEDIATE")
        pid = child_pid(writer)
        resends = batch(1, 3, ids_from=10)  # answered with dups
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.write(resends, T0), 0.3)
        assert await gone(pid), "the process that held the abandoned batch is stopped"
        lock.execute("ROLLBACK")
    fresh = await writer.write(batch(4, 2), T0)
    assert fresh.dups == {}, "the answer is this batch's, not the abandoned one's"
    assert stored(database) == [1, 2, 3, 4, 5]


async def test_the_process_outlives_sigterm_and_sigint_and_exits_when_closed(database: Path):
    w = SqliteWriter(f"sqlite:///{database}")
    await w.start()
    pid = child_pid(w)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    await w.write(batch(1, 2), T0)  # the server flushes what it accepted while it stops
    assert child_pid(w) == pid and stored(database) == [1, 2]
    await w.close()
    assert await gone(pid)


async def test_a_database_error_arrives_as_sqlalchemys_like_every_other_database_call(tmp_path: Path):
    w = SqliteWriter(f"sqlite:///{tmp_path}/missing/dir/kefu.db")  # SQLite cannot open it
    try:
        with pytest.raises(sa.exc.OperationalError) as failed:
            await w.write(batch(1, 1), T0)
        assert is_infrastructure(failed.value) and "unable to open database" in str(failed.value)
    finally:
        await w.close()


async def test_after_a_failed_batch_the_writer_skips_what_follows_until_it_is_made_ready(
        writer: SqliteWriter, database: Path):
    await writer.write(batch(1, 1), T0)
    bad = batch(2, 1)
    bad[0] = bad[0]._replace(body={"not": "bindable"})  # type: ignore[arg-type]  # SQLite refuses it
    with sqlite3.connect(database, isolation_level=None) as lock:
        lock.execute("BEGIN IMMEDIATE")  # the writer takes the bad batch, then waits for the lock
        failed = writer.send(bad, T0)
        await asyncio.sleep(0.3)
        behind = writer.send(batch(3, 2), T0)  # in the pipe while the bad batch is in hand
        await asyncio.sleep(0.1)
        lock.execute("ROLLBACK")
    with pytest.raises(sa.exc.DBAPIError):
        await failed
    with pytest.raises(Skipped) as skipped:
        await behind
    assert is_infrastructure(skipped.value)
    assert not writer.running  # nothing more is sent until the sender has seen the failure
    with pytest.raises(ConnectionError):
        writer.send(batch(3, 2), T0)
    await writer.ready()  # the resend goes after the failure, in order
    await writer.send(batch(3, 2), T0)
    assert stored(database) == [1, 3, 4]


async def test_batches_sent_together_commit_together_and_in_order(writer: SqliteWriter, database: Path):
    futures = [writer.send(batch(1 + 10 * i, 10), T0) for i in range(5)]
    results = await asyncio.gather(*futures)
    assert all(r.dups == {} and r.collisions == [] for r in results)
    assert stored(database) == list(range(1, 51))


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux's batch scheduling policy")
async def test_the_process_runs_under_the_batch_policy_so_a_batch_sent_does_not_preempt_the_loop(
        writer: SqliteWriter):
    assert os.sched_getscheduler(child_pid(writer)) == os.SCHED_BATCH
