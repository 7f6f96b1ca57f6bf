"""Creating the engines, with the per-backend settings that durability depends on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kefu.store.sqlite_batch import PRAGMAS

SQLITE_POOL = 8


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
        engine = create_async_engine(url, connect_args={"timeout": 10}, pool_size=SQLITE_POOL, max_overflow=0)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5,
        pool_timeout=10, connect_args={"connect_timeout": 5},
    )
