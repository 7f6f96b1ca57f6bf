"""Creating the engines, with the per-backend settings that durability depends on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_POOL = 8
T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets history reads run beside the writer; FULL makes a commit survive power loss,
    # which is what an ack after the group commit promises.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _writer_connect(dbapi_conn: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.isolation_level = None  # the driver begins nothing by itself: `_begin_immediate` does


def _begin_immediate(conn: sa.Connection) -> None:
    """The writer's transaction takes SQLite's write lock first, so its reads (stored ids, earlier
    cmids) and its inserts are one atomic step, and it never fails half-way on a lock upgrade."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


class SqliteThread:
    """One SQLite connection on a thread of its own, for the message writer: a batch's statements
    and its commit are one hop from the event loop, where through aiosqlite each statement was a
    hop there and back, and the loop, busy with sockets, answered each hop late. Blocking the loop
    instead is not an option: another connection's transaction that holds SQLite's write lock
    across awaits would then never finish (a stall until the busy timeout)."""

    def __init__(self, url: str) -> None:
        """`url`: the file's synchronous URL (`sqlite:///…`, `Settings.sync_database_url`)."""
        self.engine = sa.create_engine(url, pool_size=1, max_overflow=0, connect_args={"timeout": 10})
        sa.event.listen(self.engine, "connect", _writer_connect)
        sa.event.listen(self.engine, "begin", _begin_immediate)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kefu-sqlite-writer")

    async def transaction(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run `fn` in one transaction on the writer thread."""
        def run() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.dispose)
        self._thread.shutdown(wait=False)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        # A fixed set of connections, each an aiosqlite thread: beyond the pool, callers wait for
        # one rather than open (a thread, the file, the pragmas) and close another per checkout,
        # which a burst of new conversations' desk checks did thousands of times a second.
        engine = create_async_engine(url, connect_args={"timeout": 10}, pool_size=SQLITE_POOL, max_overflow=0)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5,
        pool_timeout=10, connect_args={"connect_timeout": 5},
    )
