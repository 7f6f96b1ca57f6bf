"""The team desk: conversation lifecycle, assignment and presence, across nodes.

State lives in the database (store/desk.py: every change is one conditional UPDATE) and in the
presence store; each change is announced on the broker's `desk` channel, which every node
subscribes, so every node's `Team` cache (core/team.py) and every team console learn it; and it is
recorded in the conversation's timeline as a kind `event` message through the journal (agents
only; never the user's). Auto-assignment gives a waiting conversation to the least-loaded online
agent under their limit (their own `max_open`, else KEFU_ASSIGN_LIMIT), else it waits in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kefu.background import Background
from kefu.broker.base import Broker
from kefu.core.routing import DESK, desk_envelope
from kefu.core.session import Accepted
from kefu.core.team import Team, conversation_frame, presence_frame
from kefu.errors import BadRequest, Conflict, NotAssignee, NotFound, Taken
from kefu.journal.base import draft
from kefu.protocol import ChangeStatus, Identity, Message, agent_channel
from kefu.store.desk import AgentSlot, DeskStore
from kefu.store.presence import PresenceStore

log = logging.getLogger(__name__)
Accept = Callable[[Message, str], Awaitable[Accepted]]
QUEUE_DRAIN = 50  # conversations looked at per drain of the queue
CONCURRENT_CHECKS = 4  # conversation checks at once (each holds a database connection)


def _ref(agent_id: int | None, name: str | None) -> dict[str, Any] | None:
    return None if agent_id is None else {"id": agent_id, "name": name}


def event_text(event: str, by: dict[str, Any] | None, to: dict[str, Any] | None, note: str) -> str:
    """The event's plain text (the console renders its own words from `meta`)."""
    who = by["name"] if by else "kefu"
    target = to["name"] if to else ""
    text = {
        "assigned": f"assigned to {target}",
        "claimed": f"{who} took over",
        "transferred": f"transferred to {target}",
        "released": f"{who} put it back in the queue",
        "requeued": "back in the queue",
        "resolved": f"resolved by {who}",
        "reopened": "reopened",
    }.get(event, event)
    return f"{text}: {note}" if note else text


class Desk:
    def __init__(self, *, store: DeskStore, presence: PresenceStore, broker: Broker,
                 local_channels: Callable[[], Any], accept: Accept, default_limit: int,
                 auto_assign: bool) -> None:
        self.store = store
        self.presence = presence
        self.broker = broker
        self.local_channels = local_channels
        self.accept = accept
        self.default_limit = default_limit
        self.auto_assign = auto_assign
        self.team = Team()
        self._lock = asyncio.Lock()  # this node assigns one conversation at a time
        self.background = Background(log, "desk")
        self._checking: dict[str, bool] = {}  # conversations being checked → a message came meanwhile
        # Checks at once, each a database connection: a burst of new conversations waits here
        # rather than take every connection the message writer and readers also need.
        self._check_slots = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def start(self) -> None:
        await self.broker.subscribe(DESK)
        await self.refresh()

    async def refresh(self) -> None:
        """Reload the cache (at start, and after the broker lost envelopes)."""
        self.team.load(await self.store.assigned(), {})

    async def stop(self) -> None:
        await self.background.stop(grace=0)

    # ---- presence ------------------------------------------------------------------------------

    async def connected(self, agent_id: int) -> bool:
        ch = agent_channel(agent_id)
        return ch in self.local_channels() or await self.broker.online(ch)

    async def status_of(self, agent_id: int) -> str:
        if not await self.connected(agent_id):
            return "offline"
        return await self.presence.get(agent_id)

    async def announce(self, who: Identity) -> None:
        """A team console joined: tell everyone this agent's status; give them waiting work."""
        assert who.agent_id is not None
        status = await self.status_of(who.agent_id)
        await self._publish(presence_frame(who.agent_id, who.agent_name or "", status))
        if status == "online":
            await self.drain()

    async def set_presence(self, who: Identity, status: str) -> None:
        assert who.agent_id is not None
        await self.presence.set(who.agent_id, status)
        await self.announce(who)

    async def left(self, who: Identity) -> None:
        """One of the agent's sockets closed: if none is left on any node, they are offline."""
        assert who.agent_id is not None
        await asyncio.sleep(0.3)  # let this node's unsubscribe reach the broker
        if not await self.connected(who.agent_id):
            await self._publish(presence_frame(who.agent_id, who.agent_name or "", "offline"))

    async def roster(self) -> list[dict[str, Any]]:
        """Every enabled agent, with status, load and limit (the desk reply, the transfer list)."""
        slots = [a for a in await self.store.agents() if not a.disabled]
        loads = await self.store.loads()
        statuses = await asyncio.gather(*(self.status_of(a.id) for a in slots))
        return [{"id": a.id, "name": a.name, "admin": a.is_admin, "status": s, "load": loads.get(a.id, 0),
                 "limit": self.limit_of(a)} for a, s in zip(slots, statuses, strict=True)]

    def limit_of(self, slot: AgentSlot) -> int:
        return self.default_limit if slot.max_open is None else slot.max_open

    # ---- rules for replies and notes -----------------------------------------------------------

    def check_may_answer(self, who: Identity, openid: str, cmid: str | None = None) -> None:
        holder = self.team.holder(openid)
        if holder is not None and holder != who.agent_id and not who.admin:
            raise NotAssignee("another agent handles this conversation", cmid=cmid)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def change(self, who: Identity, req: ChangeStatus) -> dict[str, Any]:
        """Claim, release, resolve, reopen or transfer; returns the new state's frame."""
        me = _ref(who.agent_id, who.agent_name)
        assert who.agent_id is not None and me is not None
        openid = req.openid
        if req.action == "claim":
            if not await self.store.claim(openid, who.agent_id):
                st = await self.store.state(openid)
                holder = await self._holder_ref(st.assignee_id)
                raise Taken(f"{holder['name'] if holder else 'another agent'} already took this conversation",
                            cmid=req.cmid, openid=openid, holder=holder)
            return await self._changed(openid, "assigned", me, "claimed", me)
        if req.action == "transfer":
            target = await self._agent(req.to)
            if target.id == who.agent_id:
                raise BadRequest("transfer to another agent", cmid=req.cmid)
            st = await self.store.state(openid)
            src = who.agent_id if not who.admin or st.assignee_id is None else st.assignee_id
            if st.status != "assigned" or (st.assignee_id != who.agent_id and not who.admin):
                raise NotAssignee("only the agent handling a conversation (or an admin) can transfer it",
                                  cmid=req.cmid)
            if not await self.store.transfer(openid, src, target.id):
                raise Conflict("the conversation changed meanwhile; try again", cmid=req.cmid)
            to = _ref(target.id, target.name)
            return await self._changed(openid, "assigned", to, "transferred", me, note=req.note)
        if req.action == "release":
            st = await self.store.state(openid)
            if st.status != "assigned" or (st.assignee_id != who.agent_id and not who.admin):
                raise NotAssignee("only the agent handling a conversation (or an admin) can put it back",
                                  cmid=req.cmid)
            if not await self.store.release(openid, st.assignee_id or 0):
                raise Conflict("the conversation changed meanwhile; try again", cmid=req.cmid)
            return await self._changed(openid, "open", None, "released", me)
        if req.action == "resolve":
            st = await self.store.state(openid)
            if st.status == "resolved":
                raise Conflict("already resolved", cmid=req.cmid)
            if st.status == "assigned" and st.assignee_id != who.agent_id and not who.admin:
                raise NotAssignee("another agent handles this conversation", cmid=req.cmid)
            if not await self.store.resolve(openid, st):
                raise Conflict("the conversation changed meanwhile; try again", cmid=req.cmid)
            holder = await self._holder_ref(st.assignee_id)
            return await self._changed(openid, "resolved", holder, "resolved", me)
        # reopen: back to the queue, then to whoever may take it
        if not await self.store.reopen(openid):
            raise Conflict("only a resolved conversation can be reopened", cmid=req.cmid)
        frame = await self._changed(openid, "open", None, "reopened", me)
        self.background.spawn(self._assign_waiting(openid), "assigning a reopened conversation")
        return frame

    def user_wrote(self, openid: str) -> None:
        """Check the conversation in the background, unless nothing can change or a check of it
        is running: a held or known-waiting conversation, or one being checked, costs no task per
        message."""
        if not self._settled(openid) and not self._checked_again(openid):
            self.background.spawn(self.on_user_message(openid), "assigning a conversation")

    def _checked_again(self, openid: str) -> bool:
        """If a check of this conversation is running, have it go round once more."""
        if openid not in self._checking:
            return False
        self._checking[openid] = True
        return True

    async def on_user_message(self, openid: str) -> None:
        """A user wrote: a resolved conversation reopens; a waiting one is assigned if anyone can.

        At most one check per conversation runs at a time: a message that arrives during it only
        asks for one more round, so a busy conversation costs one check, not one per message
        (each message's check would otherwise queue behind the assignment lock)."""
        if self._settled(openid) or self._checked_again(openid):
            return
        self._checking[openid] = False
        try:
            while True:
                async with self._check_slots:
                    await self._check(openid)
                if not self._checking[openid] or self._settled(openid):
                    return
                self._checking[openid] = False
        finally:
            del self._checking[openid]

    def _settled(self, openid: str) -> bool:
        """The fast paths: no database work while nothing can change."""
        return self.team.holder(openid) is not None or self.team.still_waiting(openid)

    async def _check(self, openid: str) -> None:
        changes = self.team.changes
        st = await self.store.state(openid)
        prefer = None
        if st.status == "assigned":
            return
        if st.status == "resolved":
            if not await self.store.reopen(openid):
                return
            prefer = st.assignee_id
            await self._changed(openid, "open", None, "reopened", None)
        if self.auto_assign and await self._assign_waiting(openid, prefer):
            return
        if st.status != "resolved" and self.team.changes == changes:
            self.team.nobody_took(openid)

    async def drain(self) -> None:
        """Assign waiting conversations, longest waiting first, while anyone has room."""
        if not self.auto_assign:
            return
        self.team.room_may_be_made()  # this node may not have heard of it yet (its frame is on the way)
        for openid in await self.store.waiting(QUEUE_DRAIN):
            if not await self._assign_waiting(openid):
                return

    async def requeue(self, agent_id: int, why: str) -> None:
        """A disabled or deleted agent's conversations go back to the queue (then to others)."""
        for openid in await self.store.held_by(agent_id):
            if await self.store.release(openid, agent_id):
                await self._changed(openid, "open", None, "requeued", None, note=why)
        await self.drain()

    async def requeue_orphans(self) -> int:
        """Conversations held by agents that are disabled or gone (changed from the CLI, which
        has no desk of its own) go back to the queue. How many agents' conversations moved."""
        holders = set((await self.store.assigned()).values())
        active = {a.id for a in await self.store.agents() if not a.disabled}
        orphaned = sorted(holders - active)
        for agent_id in orphaned:
            await self.requeue(agent_id, "disabled")
        return len(orphaned)

    async def _assign_waiting(self, openid: str, prefer: int | None = None) -> bool:
        async with self._lock:
            changes = self.team.changes
            if self.team.nobody_has_room():  # a queue behind full agents: no lookup per conversation
                return False
            slots = [a for a in await self.store.agents() if not a.disabled]
            loads = await self.store.loads()
            room = [a for a in slots if loads.get(a.id, 0) < self.limit_of(a)]
            online = await asyncio.gather(*(self.status_of(a.id) for a in room))
            ready = [a for a, s in zip(room, online, strict=True) if s == "online"]
            if not ready:
                self.team.found_full(changes)
            ready.sort(key=lambda a: (a.id != prefer, loads.get(a.id, 0), a.id))
            for a in ready:
                if await self.store.assign_within_limit(openid, a.id, self.limit_of(a)):
                    to = _ref(a.id, a.name)
                    await self._changed(openid, "assigned", to, "assigned", None)
                    return True
            return False

    # ---- announcing a change -------------------------------------------------------------------

    async def _changed(self, openid: str, status: str, assignee: dict[str, Any] | None, event: str,
                       by: dict[str, Any] | None, note: str = "") -> dict[str, Any]:
        frame = conversation_frame(openid, status, assignee, event, by, note)
        self.team.apply(frame)  # this node at once; the others through the broker
        await self._publish(frame)
        meta: dict[str, Any] = {"event": event, "status": status, "by": by, "to": assignee}
        if note:
            meta["note"] = note
        entry = draft(ts=int(time.time() * 1000), openid=openid, sender="agent",
                      msg=event_text(event, by, assignee, note), agent_id=by["id"] if by else None,
                      agent=by["name"] if by else None, kind="event", meta=meta)
        await self.accept(entry, "")
        return frame

    async def _publish(self, frame: dict[str, Any]) -> None:
        await self.broker.publish((DESK,), desk_envelope(frame))

    async def _agent(self, agent_id: int | None) -> AgentSlot:
        for a in await self.store.agents():
            if a.id == agent_id and not a.disabled:
                return a
        raise NotFound(f"no enabled agent with id {agent_id}")

    async def _holder_ref(self, agent_id: int | None) -> dict[str, Any] | None:
        if agent_id is None:
            return None
        for a in await self.store.agents():
            if a.id == agent_id:
                return _ref(a.id, a.name)
        return _ref(agent_id, None)
