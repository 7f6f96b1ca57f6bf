"""Messages, conversations, read marks and the deployment's id bookkeeping.

Writes come in batches from the journal writers and are idempotent: a batch written twice (a
writer's retry, or a recovered journal entry its owner also stored) changes nothing. An id that is
already stored with *different* content is never overwritten and never dropped silently: it is
logged and counted (`kefu_id_collisions_total`) — ids are allocated so that this cannot happen.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu import jsonio, metrics
from kefu.protocol import USER_KINDS, Message, Role
from kefu.store.batch import MESSAGE_COLUMNS, Earlier, MessageRow, Written, write_batch
from kefu.store.retry import in_transaction, retrying
from kefu.store.schema import conversations, messages, meta
from kefu.store.upsert import insert_ignore, larger, made_once, upsert

if TYPE_CHECKING:  # it runs `write_batch` in its process
    from kefu.store.sqlite_writer import SqliteWriter

log = logging.getLogger(__name__)
READ_COLUMN = {"agent": conversations.c.agent_read_upto, "user": conversations.c.user_read_upto}


def _row_to_message(r: sa.Row) -> Message:
    return Message(id=r.id, ts=r.ts, openid=r.openid, sender=r.sender, msg=r.body,
                   agent_id=r.agent_id, agent=r.agent_name, cmid=r.cmid, kind=r.kind,
                   meta=jsonio.loads(r.meta) if r.meta else None)


def message_row(m: Message, delivered: bool) -> MessageRow:
    return MessageRow(m.id, m.openid, m.sender, m.agent_id, m.agent, m.sender_key, m.cmid, m.msg, m.ts,
                      delivered, m.kind, jsonio.dumps(m.meta) if m.meta else None, m.for_user)


def _report_collisions(written: Written | asyncio.Future[Written]) -> None:
    if isinstance(written, asyncio.Future):
        if written.cancelled() or written.exception() is not None:
            return
        written = written.result()
    if written.collisions:
        metrics.ID_COLLISIONS.inc(len(written.collisions))
        log.error("ids %s are already stored with other messages; these were not stored",
                  written.collisions[:20])


def _for_user(q: sa.Select) -> sa.Select:
    """Only what the user sees: no private notes, no status events."""
    return q.where(messages.c.kind.in_(USER_KINDS))


class _CoreBatch:
    """The batch statements in SQLAlchemy Core, each compiled once (MySQL; rows as an executemany)."""

    def __init__(self, conn: sa.Connection, latest: sa.Insert) -> None:
        self.conn = conn
        self._latest = latest

    def stored(self, ids: Sequence[int]) -> Iterable[Any]:
        return self.conn.execute(sa.select(messages.c.id, messages.c.sender_key, messages.c.cmid,
                                           messages.c.body).where(messages.c.id.in_(list(ids))))

    def earlier(self, keys: Sequence[tuple[str, str]], since_ms: int) -> Iterable[Any]:
        return self.conn.execute(sa.select(messages.c.sender_key, messages.c.cmid, messages.c.id,
                                           messages.c.ts, messages.c.delivered).where(
            sa.tuple_(messages.c.sender_key, messages.c.cmid).in_(list(keys)), messages.c.ts >= since_ms))

    def insert(self, rows: Sequence[MessageRow]) -> None:
        self.conn.execute(sa.insert(messages), [dict(zip(MESSAGE_COLUMNS, r, strict=False)) for r in rows])

    def latest(self, rows: Sequence[tuple[str, int]]) -> None:
        self.conn.execute(self._latest, [{"openid": o, "last_message_id": i} for o, i in rows])


class MessageStore:
    def __init__(self, engine: AsyncEngine, writer: SqliteWriter | None = None) -> None:
        self.engine = engine
        self.writer = writer
        self.dialect = engine.dialect.name
        # Built once, so SQLAlchemy compiles it once: the rows come as an executemany.
        self._latest = self._upsert(conversations, None, "openid", ["last_message_id"])

    def _upsert(self, table: sa.TableClause, values: dict | None, key: str,
                greatest: Sequence[str]) -> sa.Insert:
        """INSERT … ON CONFLICT keeping the larger value of each `greatest` column."""
        return upsert(self.dialect, table, values, [key],
                      {c: larger(self.dialect, table, c) for c in greatest})

    async def start(self) -> None:
        """Start the SQLite writer's process now rather than at the first batch."""
        if self.writer is not None:
            await self.writer.start()

    # ---- writes --------------------------------------------------------------------------------

    def send(self, batch: Sequence[tuple[Message, bool]],
             dedupe_since_ms: int | None = None) -> asyncio.Future[Written]:
        """`write`, begun now: on SQLite with its writer running, the batch is in the writer's
        pipe when this returns, and the future settles as its answer is read, with no task in
        between (the embedded journal sends its next batch from that callback)."""
        writer = self.writer
        if writer is None or not writer.running:
            return asyncio.ensure_future(self.write(batch, dedupe_since_ms))
        fut = writer.send([message_row(m, d) for m, d in batch], dedupe_since_ms)
        fut.add_done_callback(_report_collisions)
        return fut

    def abandon(self) -> None:
        """Give up on a write that hangs: the writer's process is killed, what it held fails."""
        if self.writer is not None:
            self.writer.abandon()

    async def write(self, batch: Sequence[tuple[Message, bool]],
                    dedupe_since_ms: int | None = None) -> Written:
        """Store `(message, delivered)` pairs in one transaction (`write_batch`).

        With `dedupe_since_ms` (the embedded engine), a message whose sender already has a stored
        message with the same cmid at or after that time is not stored: it is reported in
        `Written.dups` with the earlier message, checked inside the same transaction that inserts,
        so a duplicate can never be acked as a new message nor the other way round. On SQLite the
        transaction runs in the writer's own process (`SqliteWriter`), in one exchange."""
        if not batch:
            return Written()
        what = f"storing {len(batch)} messages"
        rows = [message_row(m, d) for m, d in batch]
        if self.writer is not None:
            writer = self.writer
            out = await retrying(lambda: writer.write(rows, dedupe_since_ms), what)
        else:
            out = await in_transaction(self.engine, lambda c: c.run_sync(
                lambda sync: write_batch(_CoreBatch(sync, self._latest), rows, dedupe_since_ms)), what)
        _report_collisions(out)
        return out

    async def mark_read(self, openid: str, by: Role, upto: int) -> int:
        """Move `by`'s read mark forward (never back) and return where it now stands."""
        col = READ_COLUMN[by].name

        async def run(conn: AsyncConnection) -> int:
            await conn.execute(self._upsert(conversations, {"openid": openid, col: upto}, "openid", [col]))
            return int(await conn.scalar(
                sa.select(READ_COLUMN[by]).where(conversations.c.openid == openid)) or 0)

        return await in_transaction(self.engine, run, "saving a read mark")

    # ---- the deployment's identity and id floor ------------------------------------------------

    async def epoch(self) -> str:
        """This database's epoch: made once, when the database is new. A client that sees another
        epoch than it remembers knows ids started over, and syncs from the beginning."""
        return await in_transaction(self.engine, lambda c: made_once(c, "epoch", secrets.token_hex(8)),
                                    "reading the epoch")

    async def id_floor(self) -> int:
        """No id at or below this was ever handed out or stored: max(stored ids, leased ids)."""
        async with self.engine.connect() as conn:
            stored = (await conn.scalar(sa.select(sa.func.max(messages.c.id)))) or 0
            leased = await conn.scalar(sa.select(meta.c.v).where(meta.c.k == "id_hwm"))
        return max(int(stored), int(leased or 0))

    async def raise_id_lease(self, upto: int) -> None:
        """Record that ids up to `upto` may be handed out; only ever raised."""
        async def run(conn: AsyncConnection) -> None:
            await conn.execute(insert_ignore(meta), {"k": "id_hwm", "v": "0"})
            got = await conn.scalar(sa.select(meta.c.v).where(meta.c.k == "id_hwm"))
            if int(got or 0) < upto:
                # Compare-and-set: a concurrent raise to a higher value is never lowered.
                await conn.execute(sa.update(meta).where(meta.c.k == "id_hwm", meta.c.v == got)
                                   .values(v=str(upto)))

        await in_transaction(self.engine, run, "raising the id lease")

    async def max_id(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.scalar(sa.select(sa.func.max(messages.c.id)))) or 0)

    async def recent_cmids(self, since_ms: int,
                           page: int = 2000) -> AsyncIterator[list[tuple[str, str, Earlier]]]:
        """(sender key, cmid, message) of messages since `since_ms`, newest first, page by page:
        what a Redis that lost its data needs to dedupe again. Walks the primary key backwards
        (ids grow with time), so no index on `ts` is needed."""
        cursor: int | None = None
        while True:
            q = (sa.select(messages.c.id, messages.c.ts, messages.c.sender_key, messages.c.cmid,
                           messages.c.delivered).order_by(messages.c.id.desc()).limit(page))
            if cursor is not None:
                q = q.where(messages.c.id < cursor)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(q)).all()
            if not rows:
                return
            out = [(r.sender_key, r.cmid, Earlier(r.id, r.ts, bool(r.delivered)))
                   for r in rows if r.cmid is not None and r.ts >= since_ms]
            if out:
                yield out
            if rows[-1].ts < since_ms or len(rows) < page:
                return
            cursor = rows[-1].id

    # ---- reads ---------------------------------------------------------------------------------

    async def after(self, openid: str | None, after: int, limit: int,
                    upto: int | None = None, for_user: bool = False) -> list[Message]:
        """Oldest first: what a reconnecting client missed — a user's conversation (what the user
        sees of it), or every conversation (agents: everything, or with `for_user` only what
        users see: an agent client that does not know notes and events)."""
        q = sa.select(messages).where(messages.c.id > after).order_by(messages.c.id).limit(limit)
        if openid is not None:
            q = _for_user(q.where(messages.c.openid == openid))
        elif for_user:
            q = _for_user(q)
        if upto is not None:
            q = q.where(messages.c.id <= upto)
        async with self.engine.connect() as conn:
            return [_row_to_message(r) for r in await conn.execute(q)]

    async def history(self, openid: str, before: int | None, limit: int, upto: int | None = None,
                      for_user: bool = False) -> list[Message]:
        """Newest first, paging back with `before` = the smallest id already shown."""
        q = sa.select(messages).where(messages.c.openid == openid).order_by(messages.c.id.desc()).limit(limit)
        if for_user:
            q = _for_user(q)
        if before is not None:
            q = q.where(messages.c.id < before)
        if upto is not None:
            q = q.where(messages.c.id <= upto)
        async with self.engine.connect() as conn:
            return [_row_to_message(r) for r in await conn.execute(q)]

    async def conversations(self, before: int | None, limit: int) -> list[dict]:
        """Latest activity first, with the user's unread count as agents see it."""
        m = messages.alias("m")
        unread = (sa.select(sa.func.count()).select_from(m)
                  .where(m.c.openid == conversations.c.openid, m.c.sender == "user",
                         m.c.id > conversations.c.agent_read_upto)
                  .scalar_subquery())
        q = (sa.select(conversations, messages, unread.label("unread"))
             .join(messages, messages.c.id == conversations.c.last_message_id)
             .order_by(conversations.c.last_message_id.desc()).limit(limit))
        if before is not None:
            q = q.where(conversations.c.last_message_id < before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{
            "openid": r.openid, "last_message": _row_to_message(r).to_wire(), "unread": r.unread,
            "agent_read_upto": r.agent_read_upto, "user_read_upto": r.user_read_upto,
        } for r in rows]

    async def read_marks(self, openid: str) -> dict[str, int]:
        """Where the agents' and the user's read marks stand in one conversation (0: never read),
        and the conversation's newest stored message id."""
        q = sa.select(conversations.c.agent_read_upto, conversations.c.user_read_upto,
                      conversations.c.last_message_id).where(conversations.c.openid == openid)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return {"agent_read_upto": int(row.agent_read_upto or 0) if row else 0,
                "user_read_upto": int(row.user_read_upto or 0) if row else 0,
                "last_message_id": int(row.last_message_id or 0) if row else 0}

    async def count_from_agents(self, openid: str, after: int, excluding: Sequence[int] = ()) -> int:
        """Stored agent messages to `openid` after id `after`, not counting the ids in `excluding`."""
        q = _for_user(sa.select(sa.func.count()).select_from(messages).where(
            messages.c.openid == openid, messages.c.sender == "agent", messages.c.id > after))
        if excluding:
            q = q.where(messages.c.id.not_in(list(excluding)))
        async with self.engine.connect() as conn:
            return int(await conn.scalar(q) or 0)
