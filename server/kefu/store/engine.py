"""Creating the async engine, with the per-backend settings that durability depends on."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_POOL = 8


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # A fixed set of connections, each an aiosqlite thread: beyond the pool, callers wait for
        # one rather than open (a thread, the file, the pragmas) and close another per checkout,
        # which a burst of new conversations' desk checks did thousands of times a second.
        engine = create_async_engine(url, connect_args={"timeout": 10}, pool_size=SQLITE_POOL, max_overflow=0)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets history reads run beside the writer; FULL makes a commit survive power loss,
            # which is what an ack after the group commit promises.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        return engine
    return create_async_engine(
        url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5,
        pool_timeout=10, connect_args={"connect_timeout": 5},
    )
