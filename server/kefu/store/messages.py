"""Messages, conversations and read marks: batched idempotent writes and cursor reads."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.protocol import Message, Role
from kefu.store.schema import conversations, messages

READ_COLUMN = {"agent": conversations.c.agent_read_upto, "user": conversations.c.user_read_upto}


def _row_to_message(r: sa.Row) -> Message:
    return Message(id=r.id, ts=r.ts, openid=r.openid, sender=r.sender, msg=r.body,
                   agent_id=r.agent_id, agent=r.agent_name, cmid=r.cmid)


class MessageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _upsert(self, table: sa.Table, values: list[dict], key: str, greatest: Sequence[str]) -> sa.Insert:
        """INSERT … ON CONFLICT keeping the larger value of each `greatest` column."""
        if self.dialect == "mysql":
            ins = mysql.insert(table).values(values)
            return ins.on_duplicate_key_update(
                {c: sa.func.greatest(table.c[c], ins.inserted[c]) for c in greatest})
        ins = sqlite.insert(table).values(values)
        return ins.on_conflict_do_update(
            index_elements=[key], set_={c: sa.func.max(table.c[c], ins.excluded[c]) for c in greatest})

    async def insert_batch(self, batch: Sequence[Message]) -> None:
        """Write a batch in one transaction. Idempotent: a replayed batch changes nothing."""
        if not batch:
            return
        rows = [{
            "id": m.id, "openid": m.openid, "sender": m.sender, "agent_id": m.agent_id,
            "agent_name": m.agent, "sender_key": f"u:{m.openid}" if m.sender == "user" else f"a:{m.agent_id}",
            "cmid": m.cmid, "body": m.msg, "ts": m.ts,
        } for m in batch]
        last: dict[str, int] = {}
        for m in batch:
            last[m.openid] = max(last.get(m.openid, 0), m.id)
        insert = (sa.insert(messages).prefix_with("OR IGNORE", dialect="sqlite")
                  .prefix_with("IGNORE", dialect="mysql"))
        conv = self._upsert(conversations, [{"openid": o, "last_message_id": i} for o, i in last.items()],
                            "openid", ["last_message_id"])
        async with self.engine.begin() as conn:
            await conn.execute(insert, rows)
            await conn.execute(conv)

    async def max_id(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.scalar(sa.select(sa.func.max(messages.c.id)))) or 0

    async def after(self, openid: str | None, after: int, limit: int) -> list[Message]:
        """Oldest first: what a reconnecting client missed (one conversation, or all of them)."""
        q = sa.select(messages).where(messages.c.id > after).order_by(messages.c.id).limit(limit)
        if openid is not None:
            q = q.where(messages.c.openid == openid)
        async with self.engine.connect() as conn:
            return [_row_to_message(r) for r in await conn.execute(q)]

    async def history(self, openid: str, before: int | None, limit: int) -> list[Message]:
        """Newest first, paging back with `before` = the smallest id already shown."""
        q = sa.select(messages).where(messages.c.openid == openid).order_by(messages.c.id.desc()).limit(limit)
        if before is not None:
            q = q.where(messages.c.id < before)
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
        """Where the agents' and the user's read marks stand in one conversation (0: never read)."""
        q = sa.select(conversations.c.agent_read_upto, conversations.c.user_read_upto).where(
            conversations.c.openid == openid)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return {"agent_read_upto": int(row.agent_read_upto or 0) if row else 0,
                "user_read_upto": int(row.user_read_upto or 0) if row else 0}

    async def count_from_agents(self, openid: str, after: int, excluding: Sequence[int] = ()) -> int:
        """Stored agent messages to `openid` after id `after`, not counting the ids in `excluding`."""
        q = (sa.select(sa.func.count()).select_from(messages)
             .where(messages.c.openid == openid, messages.c.sender == "agent", messages.c.id > after))
        if excluding:
            q = q.where(messages.c.id.not_in(list(excluding)))
        async with self.engine.connect() as conn:
            return int(await conn.scalar(q) or 0)

    async def mark_read(self, openid: str, by: Role, upto: int) -> int:
        """Move `by`'s read mark forward (never back) and return where it now stands."""
        col = READ_COLUMN[by].name
        async with self.engine.begin() as conn:
            await conn.execute(self._upsert(conversations, [{"openid": openid, col: upto}], "openid", [col]))
            return int(await conn.scalar(
                sa.select(READ_COLUMN[by]).where(conversations.c.openid == openid)) or 0)
