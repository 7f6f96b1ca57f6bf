"""The embedded engine's connections after a cancelled query.

SQLAlchemy closes a connection it invalidates (a query cancelled mid-way: a socket that closed, a
request that timed out) without closing that query's cursor. sqlite3's `close()` then leaves the
connection open inside SQLite (a "zombie"), with its transaction and SQLite's write lock, until
the garbage collector frees the cursor; every other write meanwhile waits out its busy timeout and
fails. The engine's connections end what they hold when they close.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from pathlib import Path

import sqlalchemy as sa

from kefu.store.engine import make_engine


def _write_lock_free(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0.2)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


async def test_a_query_cancelled_inside_a_write_transaction_leaves_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "kefu.sqlite3"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    entered, release = threading.Event(), threading.Event()

    def slow(x: int) -> int:  # runs in the connection's thread, inside the SELECT
        entered.set()
        release.wait(5)
        return x

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _add_slow(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.create_function("slow", 1, slow)

    async with engine.begin() as c:
        await c.execute(sa.text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        await c.execute(sa.text("INSERT INTO t (k) VALUES (1), (2), (3)"))

    async def transaction() -> None:
        async with engine.begin() as c:
            await c.execute(sa.text("INSERT INTO t (k) VALUES (4)"))  # holds the write lock now
            await c.scalar(sa.text("SELECT slow(k) FROM t"))

    gc.disable()  # the cursor must not be freed by chance: as when it sits in a reference cycle
    try:
        task = asyncio.create_task(transaction())
        assert await asyncio.to_thread(entered.wait, 5)
        task.cancel()
        release.set()
        kept: list[BaseException] = []  # the cancellation, its traceback, the cursor in its frames
        try:
            await task
        except asyncio.CancelledError as e:
            kept.append(e)
        assert kept
        for _ in range(50):  # the invalidated connection's close runs in its own thread
            if _write_lock_free(path):
                break
            await asyncio.sleep(0.02)
        assert _write_lock_free(path), "a closed connection still holds SQLite's write lock"
        async with engine.begin() as c:  # and the pool goes on writing
            await c.execute(sa.text("INSERT INTO t (k) VALUES (5)"))
        async with engine.connect() as c:
            assert await c.scalar(sa.text("SELECT group_concat(k) FROM t")) == "1,2,3,5"
    finally:
        gc.enable()
        await engine.dispose()
