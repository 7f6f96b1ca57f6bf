"""Conversation status and assignment, per-agent limits, and the console's views.

Every change of who holds a conversation is one conditional UPDATE of its row (`status`,
`assignee_id`): the WHERE clause states what must still be true, and the row count says whether
it was. So of two agents claiming the same conversation at the same moment, on any nodes, exactly
one changes the row; the other reads who did. Auto-assignment also holds the chosen agent's row
(`SELECT … FOR UPDATE` on MySQL) while it counts their load, so two nodes assigning at once
cannot both fill an agent's last free slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu import jsonio
from kefu.store.retry import in_transaction
from kefu.store.schema import agent_limits, desk_conversations, messages, profiles
from kefu.store.upsert import insert_ignore

conv = desk_conversations
VIEWS = ("mine", "unassigned", "all", "resolved")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class State:
    status: str
    assignee_id: int | None


@dataclass(frozen=True, slots=True)
class AgentSlot:
    id: int
    name: str
    disabled: bool
    is_admin: bool
    max_open: int | None


class DeskStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def _ensure(self, c: AsyncConnection, openid: str) -> None:
        """The row may not exist yet: with Redis the writer stores messages (and creates the row)
        after the ack. `last_message_id` 0 is raised by the writer's upsert (GREATEST)."""
        await c.execute(insert_ignore(conv).values(openid=openid, last_message_id=0, agent_read_upto=0,
                                                     user_read_upto=0, status="open", status_at=0))

    async def state(self, openid: str) -> State:
        async with self.engine.connect() as c:
            row = (await c.execute(sa.select(conv.c.status, conv.c.assignee_id)
                                   .where(conv.c.openid == openid))).first()
        return State(row.status, row.assignee_id) if row else State("open", None)

    async def _change(self, openid: str, where: Any, **values: Any) -> bool:
        async def run(c: AsyncConnection) -> bool:
            await self._ensure(c, openid)
            res = await c.execute(sa.update(conv).where(conv.c.openid == openid, where)
                                  .values(status_at=now_ms(), **values))
            return res.rowcount > 0
        return await in_transaction(self.engine, run, "changing a conversation's status")

    # ---- the conditional updates -----------------------------------------------------------

    async def claim(self, openid: str, agent_id: int) -> bool:
        """Take a waiting (or resolved) conversation: wins only if nobody holds it."""
        return await self._change(openid, conv.c.status != "assigned", status="assigned",
                                  assignee_id=agent_id)

    async def transfer(self, openid: str, from_id: int, to_id: int) -> bool:
        return await self._change(openid, sa.and_(conv.c.status == "assigned", conv.c.assignee_id == from_id),
                                  assignee_id=to_id)

    async def release(self, openid: str, from_id: int) -> bool:
        return await self._change(openid, sa.and_(conv.c.status == "assigned", conv.c.assignee_id == from_id),
                                  status="open", assignee_id=None)

    async def resolve(self, openid: str, expected: State) -> bool:
        """Resolve if nothing changed since `expected` was read. The resolver stays on the row
        (`assignee_id`) so that "resolved by" is known; a resolved row counts toward nobody's load."""
        cond = sa.and_(conv.c.status == expected.status,
                       conv.c.assignee_id.is_(None) if expected.assignee_id is None
                       else conv.c.assignee_id == expected.assignee_id)
        return await self._change(openid, cond, status="resolved")

    async def reopen(self, openid: str) -> bool:
        return await self._change(openid, conv.c.status == "resolved", status="open", assignee_id=None)

    async def assign_within_limit(self, openid: str, agent_id: int, limit: int) -> bool:
        """Auto-assignment: give a waiting conversation to `agent_id` if they hold fewer than `limit`."""
        async def run(c: AsyncConnection) -> bool:
            await self._ensure(c, openid)
            locked = await c.execute(sa.select(agent_limits.c.id).where(
                agent_limits.c.id == agent_id, agent_limits.c.disabled == sa.false()).with_for_update())
            if locked.first() is None:
                return False
            load = await c.scalar(sa.select(sa.func.count()).select_from(conv).where(
                conv.c.assignee_id == agent_id, conv.c.status == "assigned"))
            if int(load or 0) >= limit:
                return False
            res = await c.execute(sa.update(conv).where(conv.c.openid == openid, conv.c.status == "open")
                                  .values(status="assigned", assignee_id=agent_id, status_at=now_ms()))
            return res.rowcount > 0
        return await in_transaction(self.engine, run, "assigning a conversation")

    # ---- reads -----------------------------------------------------------------------------

    async def assigned(self) -> dict[str, int]:
        """Every assigned conversation and its holder: what a node's cache starts from."""
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(conv.c.openid, conv.c.assignee_id)
                                   .where(conv.c.status == "assigned"))
            return {r.openid: int(r.assignee_id) for r in rows}

    async def held_by(self, agent_id: int) -> list[str]:
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(conv.c.openid).where(
                conv.c.assignee_id == agent_id, conv.c.status == "assigned"))
            return [r.openid for r in rows]

    async def loads(self) -> dict[int, int]:
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(conv.c.assignee_id, sa.func.count().label("n"))
                                   .where(conv.c.status == "assigned").group_by(conv.c.assignee_id))
            return {int(r.assignee_id): int(r.n) for r in rows}

    async def waiting(self, limit: int) -> list[str]:
        """The queue, longest waiting first (oldest latest message)."""
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(conv.c.openid).where(
                conv.c.status == "open", conv.c.last_message_id > 0)
                .order_by(conv.c.last_message_id).limit(limit))
            return [r.openid for r in rows]

    async def agents(self) -> list[AgentSlot]:
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(agent_limits).order_by(agent_limits.c.id))
            return [AgentSlot(int(r.id), r.name, bool(r.disabled), bool(r.is_admin),
                              None if r.max_open is None else int(r.max_open)) for r in rows]

    async def set_max_open(self, agent_id: int, max_open: int | None) -> None:
        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.update(agent_limits).where(agent_limits.c.id == agent_id)
                            .values(max_open=max_open))
        await in_transaction(self.engine, run, "setting an agent's limit")

    async def events(self, openid: str, limit: int = 20) -> list[dict[str, Any]]:
        """The conversation's status events, newest first: its earlier episodes (resolved by whom,
        when), for the side panel."""
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(messages.c.id, messages.c.ts, messages.c.meta).where(
                messages.c.openid == openid, messages.c.kind == "event")
                .order_by(messages.c.id.desc()).limit(limit))
            return [{"id": int(r.id), "ts": int(r.ts), "meta": jsonio.loads(r.meta) if r.meta else {}}
                    for r in rows]

    def _view(self, q: sa.Select, view: str, agent_id: int | None) -> sa.Select:
        if view == "mine":
            return q.where(conv.c.status == "assigned", conv.c.assignee_id == agent_id)
        if view == "unassigned":
            return q.where(conv.c.status == "open")
        if view == "resolved":
            return q.where(conv.c.status == "resolved")
        return q

    async def counts(self, agent_id: int | None) -> dict[str, int]:
        me = (conv.c.assignee_id == agent_id).label("me")
        q = (sa.select(conv.c.status, me, sa.func.count().label("n"))
             .where(conv.c.last_message_id > 0).group_by(conv.c.status, sa.text("me")))
        out = dict.fromkeys(VIEWS, 0)
        async with self.engine.connect() as c:
            for r in await c.execute(q):
                out["all"] += int(r.n)
                if r.status == "open":
                    out["unassigned"] += int(r.n)
                elif r.status == "resolved":
                    out["resolved"] += int(r.n)
                elif r.me:
                    out["mine"] += int(r.n)
        return out

    async def list(self, view: str, agent_id: int | None, before: int | None, limit: int) -> list[dict]:
        """A view of the conversation list, latest activity first, with status, holder, profile
        and the agents' unread count."""
        m = messages.alias("m")
        unread = (sa.select(sa.func.count()).select_from(m)
                  .where(m.c.openid == conv.c.openid, m.c.sender == "user", m.c.id > conv.c.agent_read_upto)
                  .scalar_subquery())
        holder = agent_limits.alias("holder")
        q = (sa.select(conv, messages.c.id.label("m_id"), messages.c.ts, messages.c.sender,
                       messages.c.agent_id, messages.c.agent_name, messages.c.body, messages.c.cmid,
                       messages.c.kind, messages.c.meta, unread.label("unread"),
                       holder.c.name.label("holder_name"), profiles.c.name.label("p_name"),
                       profiles.c.avatar.label("p_avatar"), profiles.c.nickname.label("p_nickname"),
                       profiles.c.user_avatar.label("p_user_avatar"), profiles.c.tags.label("p_tags"))
             .join(messages, messages.c.id == conv.c.last_message_id)
             .outerjoin(holder, holder.c.id == conv.c.assignee_id)
             .outerjoin(profiles, profiles.c.openid == conv.c.openid)
             .order_by(conv.c.last_message_id.desc()).limit(limit))
        q = self._view(q, view, agent_id)
        if before is not None:
            q = q.where(conv.c.last_message_id < before)
        async with self.engine.connect() as c:
            rows = (await c.execute(q)).all()
        return [_row(r) for r in rows]


def _row(r: sa.Row) -> dict[str, Any]:
    last: dict[str, Any] = {"id": r.m_id, "ts": r.ts, "openid": r.openid, "from": r.sender, "msg": r.body}
    if r.sender == "agent":
        last["agent"], last["agent_id"] = r.agent_name, r.agent_id
    if r.cmid is not None:
        last["cmid"] = r.cmid
    if r.kind != "text":
        last["kind"] = r.kind
    if r.meta:
        last["meta"] = jsonio.loads(r.meta)
    return {
        "openid": r.openid, "last_message": last, "unread": r.unread,
        "agent_read_upto": r.agent_read_upto, "user_read_upto": r.user_read_upto,
        "status": r.status,
        "assignee": {"id": int(r.assignee_id), "name": r.holder_name} if r.assignee_id is not None else None,
        "status_at": r.status_at,
        "profile": display_profile(r.p_name, r.p_avatar, r.p_nickname, r.p_user_avatar, r.p_tags),
    }


def display_profile(name: str | None, avatar: str | None, nickname: str | None, user_avatar: str | None,
                    tags: str | None) -> dict[str, Any] | None:
    """What the list shows: the backend's name and avatar first, else what the user set."""
    if not any((name, avatar, nickname, user_avatar, tags)):
        return None
    return {"name": name or nickname, "avatar": avatar or user_avatar,
            "tags": jsonio.loads(tags) if tags else []}
