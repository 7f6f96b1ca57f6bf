"""The journal writers' batch write (`MessageStore.write`) on both databases: replays change nothing,
a colliding id is never overwritten, a sender's cmid is stored once, a conversation's latest id
only moves up. On SQLite the writer process's statements (store/sqlite_batch.py) are also checked
for what SQLite plans to do with them: no scan of the messages table, however many it holds."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from kefu.config import Settings, to_driver_url
from kefu.journal.base import draft
from kefu.migrate import upgrade
from kefu.protocol import Message
from kefu.store import sqlite_batch, writer_process
from kefu.store.engine import make_engine, sqlite_path
from kefu.store.messages import MessageStore, message_row
from kefu.store.schema import conversations, messages
from kefu.store.sqlite_writer import SqliteWriter
from tests.support import services

T0 = 1_700_000_000_000


@pytest.fixture
async def store(deployment) -> AsyncIterator[MessageStore]:  # type: ignore[no-untyped-def]
    if deployment.backend == "embedded":
        settings = Settings(data_dir=deployment.tmp / "data", _env_file=None)
        upgrade(settings)
        st = MessageStore(make_engine(settings.database_url), SqliteWriter(settings.sync_database_url))
    else:
        deployment.server(start=False)  # migrates the test's database
        url = to_driver_url(services.mysql_url(deployment.database), "mysql+aiomysql")
        st = MessageStore(make_engine(url))
    try:
        yield st
    finally:
        if st.writer is not None:
            await st.writer.close()
        await st.engine.dispose()


def msg(i: int, body: str = "", cmid: str | None = None, openid: str = "o_1", ts: int = T0) -> Message:
    return draft(ts=ts + i, openid=openid, sender="user", msg=body or f"m{i}", agent_id=None, agent=None,
                 cmid=cmid if cmid is not None else f"c{i}").with_id(i)


async def rows(st: MessageStore) -> list[tuple[int, str, str | None]]:
    async with st.engine.connect() as c:
        return [tuple(r) for r in await c.execute(  # type: ignore[misc]
            sa.select(messages.c.id, messages.c.body, messages.c.cmid).order_by(messages.c.id))]


async def latest(st: MessageStore, openid: str) -> int:
    async with st.engine.connect() as c:
        return int(await c.scalar(sa.select(conversations.c.last_message_id)
                                  .where(conversations.c.openid == openid)) or 0)


async def test_replays_collisions_dedupe_and_the_latest_id(store: MessageStore):
    batch = [(msg(i, openid=f"o_{i % 3}"), i % 2 == 0) for i in range(1, 8)]
    assert await store.write(batch, T0) == await store.write(batch, T0)  # a replay is skipped
    assert [r[0] for r in await rows(store)] == list(range(1, 8))
    assert [await latest(store, f"o_{k}") for k in range(3)] == [6, 7, 5]

    clash = await store.write([(msg(3, body="another text", cmid="other"), False), (msg(8), True)])
    assert clash.collisions == [3] and (3, "m3", "c3") in await rows(store), "never overwritten"

    # The same sender and cmid again under a new id: reported with the earlier message, not stored.
    again = await store.write([(msg(9, cmid="c2", openid="o_2"), False), (msg(10), False)], T0)
    assert {k: (e.id, e.delivered) for k, e in again.dups.items()} == {("u:o_2", "c2"): (2, True)}
    assert 9 not in [r[0] for r in await rows(store)]
    # … unless the earlier one is older than the dedupe window
    assert (await store.write([(msg(11, cmid="c4"), False)], T0 + 100)).dups == {}

    await store.write([(msg(12, openid="o_late"), False)])
    await store.write([(msg(4, openid="o_late", cmid="c4-late"), False)])
    assert await latest(store, "o_late") == 12, "a conversation's latest id never moves back"


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
def test_sqlite_batches_beyond_the_parameter_limit_and_plans_no_scan(deployment, monkeypatch):  # type: ignore[no-untyped-def]
    """The writer process's statements, run here on the same engine it makes."""
    settings = Settings(data_dir=deployment.tmp / "data", _env_file=None)
    upgrade(settings)
    monkeypatch.setattr(sqlite_batch, "MAX_PARAMETERS", 40)  # 3 message rows per INSERT, 20 keys per lookup
    path = str(sqlite_path(settings.sync_database_url))
    conn = writer_process.connect(path)
    writer_process.run(conn, [message_row(msg(i, openid=f"o_{i % 7}"), False) for i in range(1, 1001)], T0)
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1000,)

    statements: list[str] = []  # as SQLite ran them, with their parameters written in
    conn.set_trace_callback(statements.append)
    resent = [message_row(msg(i + 1000, cmid=f"c{i}", openid=f"o_{i % 7}"), False) for i in range(1, 51)]
    again = writer_process.run(conn, resent, T0)
    conn.close()
    assert len(again.dups) == 50
    selects = [s for s in statements if "SELECT" in s]
    assert selects, statements
    with sqlite3.connect(path) as db:
        for s in selects:
            plan = " / ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + s))
            assert "SCAN messages" not in plan and "SCAN m " not in plan + " ", (s[:120], plan)
