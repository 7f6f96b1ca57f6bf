"""Creating the engines, with the per-backend settings that durability depends on."""

from __future__ import annotations

import contextlib
import sqlite3
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kefu.store.sqlite_batch import PRAGMAS

SQLITE_POOL = 8


class _ClosingConnection(sqlite3.Connection):
    """A connection that ends what it holds when it closes: its cursors, then its transaction.

    SQLAlchemy closes a connection it invalidates (a query cancelled mid-way, as when a socket
    closes) without closing that query's cursor, and sqlite3's `close()` then leaves the connection
    open inside SQLite, with its transaction and the database's write lock, until the garbage
    collector frees the cursor: every other write waited out its busy timeout and failed meanwhile
    (tests/test_sqlite_pool.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors: weakref.WeakSet[sqlite3.Cursor] = weakref.WeakSet()

    def cursor(self, factory: Any = sqlite3.Cursor) -> Any:
        cur = super().cursor(factory)
        self._cursors.add(cur)
        return cur

    def close(self) -> None:
        for cur in list(self._cursors):
            with contextlib.suppress(sqlite3.Error):
                cur.close()
        with contextlib.suppress(sqlite3.Error):
            self.rollback()  # nothing outside a transaction
        super().close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in PRAGMAS:
        cur.execute(pragma)
    cur.close()


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
        # A fixed set of connections, each an aiosqlite thread: beyond the pool, callers wait for
        # one rather than open (a thread, the file, the pragmas) and close another per checkout,
        # which a burst of new conversations' desk checks did thousands of times a second.
        engine = create_async_engine(url, connect_args={"timeout": 10, "factory": _ClosingConnection},
                                     pool_size=SQLITE_POOL, max_overflow=0)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5,
        pool_timeout=10, connect_args={"connect_timeout": 5},
    )
