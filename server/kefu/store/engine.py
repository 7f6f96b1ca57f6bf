"""Creating the engines, with the per-backend settings that durability depends on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_POOL = 8


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


def writer_engine(url: str) -> sa.Engine:
    """The message writer's one connection (`writer_process.py`), from the file's synchronous URL
    (`sqlite:///…`, `Settings.sync_database_url`): every transaction begins with the write lock."""
    engine = sa.create_engine(url, pool_size=1, max_overflow=0, connect_args={"timeout": 10})
    sa.event.listen(engine, "connect", _writer_connect)
    sa.event.listen(engine, "begin", _begin_immediate)
    return engine


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
