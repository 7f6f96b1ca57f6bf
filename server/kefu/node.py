"""The node: what the server does with an authenticated request, whatever socket or port it came on.

It owns this process's engines (broker, journal, stores) and the hub. The journal decides ids,
dedupe, durability and relay in one step (docs/architecture.md); the node adds the reads that must
see the journal too — sync, history, unread counts, read marks — and kicks and pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kefu import metrics
from kefu.asks import Asks
from kefu.broker.base import Broker
from kefu.core.push import push_envelope
from kefu.core.routing import (
    AGENTS,
    DESK,
    TOKENS,
    Envelope,
    conversation_channels,
    kick_envelope,
    read_envelope,
    typing_channel,
    typing_envelope,
)
from kefu.core.session import Accepted, Limits
from kefu.desk import Desk
from kefu.errors import BadRequest, Close
from kefu.hub import Hub
from kefu.journal.base import Journal, draft
from kefu.protocol import (
    Identity,
    Message,
    Note,
    Role,
    SendMessage,
    Typing,
    agent_channel,
    user_channel,
)
from kefu.store.accounts import AccountStore
from kefu.store.desk import DeskStore
from kefu.store.messages import MessageStore
from kefu.store.presence import MemoryPresence, PresenceStore
from kefu.store.token_cache import CachedTokens
from kefu.store.tokens import TokenStore, digest

if TYPE_CHECKING:
    from kefu.media.service import Media

log = logging.getLogger(__name__)

SYNC_MAX_CHARS = 256 * 1024  # a sync reply carries at most about this much text; `more` says the rest


def now_ms() -> int:
    return int(time.time() * 1000)


def _merge(stored: list[Message], pending: list[Message]) -> list[Message]:
    """Stored and journaled messages by id (a message in both counts once), oldest first."""
    return sorted({m.id: m for m in [*stored, *pending]}.values(), key=lambda m: m.id)


class Node:
    def __init__(self, *, broker: Broker, journal: Journal, messages: MessageStore, accounts: AccountStore,
                 tokens: TokenStore, limits: Limits, presence: PresenceStore | None = None,
                 assign_limit: int = 5, auto_assign: bool = True) -> None:
        self.broker = broker
        self.journal = journal
        self.messages = messages
        self.accounts = accounts
        self.tokens = CachedTokens(tokens, self._announce_revoked)
        self.limits = limits
        self.hub = Hub(broker)
        self.node_id = uuid.uuid4().hex[:16]
        self.asks = Asks(broker, self.node_id)
        self.desk = Desk(store=DeskStore(messages.engine), presence=presence or MemoryPresence(),
                         broker=broker, local_channels=lambda: self.hub.channels, accept=self.journal.accept,
                         default_limit=assign_limit, auto_assign=auto_assign)
        self.epoch = ""
        self._sweeper: asyncio.Task[None] | None = None
        #: Pictures (set by the app; without it image frames are refused).
        self.media: Media | None = None
        #: Called with every new agent reply and agent typing (WeChat's customer-service channel
        #: forwards what a user who is not connected should still get); must not block.
        self.on_reply: Callable[[Accepted], None] | None = None
        self.on_agent_typing: Callable[[Identity, str], None] | None = None
        #: Called with a uid's channel and its `group` envelope (push/service.py follows it and
        #: answers the asker); must not block.
        self.on_group_change: Callable[[str, Envelope], None] | None = None

    async def start(self) -> None:
        self.epoch = await self.messages.epoch()
        await self.broker.start(self._on_envelope, self._on_gap)
        await self.broker.subscribe(TOKENS)
        await self.asks.start()
        await self.journal.start()
        await self.desk.start()
        self._sweeper = asyncio.create_task(self._sweep_idle())

    def _on_envelope(self, channel: str, env: Envelope) -> None:
        """Desk changes update this node's team cache, then go to its agent sockets; answers and
        group changes are the node's, not its sockets'."""
        if channel == DESK:
            self.desk.team.apply(env.frame)
            self.hub.on_envelope(AGENTS, env)
        elif env.kind == "answer":
            self.asks.answered(env.frame)
        elif env.kind == "revoked":
            if isinstance(d := env.frame.get("digest"), str):
                self.tokens.forget(d)
        elif env.kind == "group":
            if self.on_group_change is not None:
                self.on_group_change(channel, env)
        else:
            self.hub.on_envelope(channel, env)

    def _on_gap(self) -> None:
        self.tokens.forget_all()
        self.hub.on_gap()
        self.desk.background.spawn(self.desk.refresh(), "reloading assignments after a broker gap")

    async def close_sockets(self) -> None:
        """First half of a drain: tell every socket we are going away."""
        for conn in self.hub.all_conns():
            conn.close_soon(Close.GOING_AWAY, "server shutting down")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Second half: flush accepted messages to the database, then release the engines."""
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.desk.stop()
        await self.journal.stop(flush_timeout)
        await self.broker.stop()

    async def _sweep_idle(self) -> None:
        period = min(5.0, max(0.2, self.limits.heartbeat_timeout / 4))
        while True:
            await asyncio.sleep(period)
            self.hub.sweep(time.monotonic(), time.time())

    # ---- messages ------------------------------------------------------------------------------

    def submit(self, who: Identity, req: SendMessage, origin: str = "",
               image: dict[str, Any] | None = None) -> asyncio.Future[Accepted]:
        """A message on its way into the journal (`Journal.submit`). An agent may answer a
        conversation they hold or one nobody holds (admins: any); a user's message reopens or
        assigns their conversation once accepted, off the ack's path. A picture comes fetched
        (`accept`)."""
        if who.role == "agent":
            self.desk.check_may_answer(who, req.openid, req.cmid)
        kind, meta = ("image", {"image": image}) if image is not None else ("text", None)
        entry = draft(ts=now_ms(), openid=req.openid, sender=who.role, msg=req.msg, agent_id=who.agent_id,
                      agent=who.agent_name, cmid=req.cmid, kind=kind, meta=meta)
        return self._followed(self.journal.submit(entry, origin))

    async def accept(self, who: Identity, req: SendMessage, origin: str = "") -> Accepted:
        """`submit`, awaited, for a message with a picture too: durable, relayed and with its id
        when this returns (or `Unavailable`)."""
        image = None
        if req.image is not None:
            if who.role == "agent":  # before fetching it; `submit` checks again after
                self.desk.check_may_answer(who, req.openid, req.cmid)
            if self.media is None:
                raise BadRequest("pictures are not enabled on this server", cmid=req.cmid)
            image = await self.media.for_message(req.image, req.openid, who)
        return await asyncio.shield(self.submit(who, req, origin, image))

    async def accept_inbound(self, entry: Message) -> Accepted:
        """A user's message that came by another channel than a socket (WeChat's customer-service
        chat): stored, relayed and assigned exactly like one from the user's socket."""
        return await asyncio.shield(self._followed(self.journal.submit(entry, "")))

    def _followed(self, fut: asyncio.Future[Accepted]) -> asyncio.Future[Accepted]:
        """Attach what follows a new message: it runs before the ack, whose callback comes after."""
        fut.add_done_callback(self._on_accepted)
        return fut

    def _on_accepted(self, fut: asyncio.Future[Accepted]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        result = fut.result()
        if result.dup:
            return
        m = result.message
        metrics.ACCEPTED_FROM[m.sender].inc()
        if m.sender == "user":
            if m.for_user:
                self.desk.user_wrote(m.openid)
        elif self.on_reply is not None:
            self.on_reply(result)

    def note(self, who: Identity, req: Note, origin: str = "") -> asyncio.Future[Accepted]:
        """A private note: stored and relayed like a message (`Journal.submit`), but only ever
        to agents."""
        self.desk.check_may_answer(who, req.openid, req.cmid)
        entry = draft(ts=now_ms(), openid=req.openid, sender="agent", msg=req.msg, agent_id=who.agent_id,
                      agent=who.agent_name, cmid=req.cmid, kind="note")
        return self.journal.submit(entry, origin)

    async def typing(self, who: Identity, req: Typing, origin: str = "") -> None:
        """Relayed to the other side of that conversation only; never stored."""
        env = typing_envelope(req.openid, who.role, who.agent_name if who.role == "agent" else None, origin)
        await self.broker.publish((typing_channel(req.openid, who.role),), env)
        if who.role == "agent" and self.on_agent_typing is not None:
            self.on_agent_typing(who, req.openid)

    async def since(self, who: Identity, after: int, limit: int,
                    everything: bool = False) -> tuple[list[Message], bool]:
        """Messages after `after` that `who` may see, oldest first: every one with an id up to the
        last returned, stored or still in the journal (docs/architecture.md, "sync is exact").
        Notes and status events only with `everything` (an agent's team console)."""
        openid = who.openid if who.role == "user" else None
        for_user = not (everything and who.role == "agent")
        snap = await self.journal.snapshot(openid, after)  # first: see architecture.md
        stored = await self.messages.after(openid, after, limit + 1, upto=snap.cap, for_user=for_user)
        pending = [m for m in snap.pending if not for_user or m.for_user]
        merged = _merge(stored, pending)
        out: list[Message] = []
        size = 0
        for m in merged[:limit]:
            size += len(m.msg) + 200
            if out and size > SYNC_MAX_CHARS:
                break
            out.append(m)
        return out, len(out) < len(merged)

    async def history(self, who: Identity, openid: str, before: int | None, limit: int,
                      everything: bool = False) -> list[Message]:
        """Newest first, paging back with `before`; includes messages still in the journal. A user
        sees only what is for users; agents see notes and status events when they ask
        (`everything`: the team console)."""
        for_user = who.role == "user" or not everything
        snap = await self.journal.snapshot(openid, 0)
        stored = await self.messages.history(openid, before, limit, upto=snap.cap, for_user=for_user)
        pending = [m for m in snap.pending
                   if (before is None or m.id < before) and (m.for_user or not for_user)]
        return _merge(stored, pending)[::-1][:limit]

    async def read_state(self, openid: str) -> dict[str, int]:
        """A user's read marks and unread count, counting agent messages still in the journal:
        a reply acked a moment ago is unread even before the writer has stored it."""
        marks = await self.messages.read_marks(openid)
        mark = marks["user_read_upto"]
        snap = await self.journal.snapshot(openid, mark)
        pending = {m.id for m in snap.pending if m.sender == "agent" and m.for_user}
        stored = await self.messages.count_from_agents(openid, mark, sorted(pending))
        return {"unread": stored + len(pending), "agent_read_upto": marks["agent_read_upto"],
                "user_read_upto": marks["user_read_upto"]}

    async def mark_read(self, who: Identity, openid: str, upto: int | None, origin: str = "") -> int:
        """Move `who`'s side's read mark to `upto` (default and at most: the newest message)."""
        marks = await self.messages.read_marks(openid)
        snap = await self.journal.snapshot(openid, marks["last_message_id"])
        newest = max([marks["last_message_id"], *(m.id for m in snap.pending)])
        upto = newest if upto is None else min(upto, newest)
        upto = await self.messages.mark_read(openid, who.role, upto)
        envelope = read_envelope(openid, who.role, upto, origin)
        await self.broker.publish(conversation_channels(openid), envelope)
        return upto

    # ---- identities ------------------------------------------------------------------------------

    async def identify(self, token: str) -> Identity | None:
        """Who a token speaks as, or None (unknown, expired, revoked)."""
        return await self.tokens.resolve(token)

    async def login_user(self, openid: str, unionid: str | None, ttl: int) -> str:
        """Record a mini-program (or QR-scanning) user's login and issue their token."""
        await self.accounts.touch_user(openid, unionid)
        return await self.tokens.issue(Identity(role="user", openid=openid), ttl)

    async def conversations(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        """The agents' conversation list, latest activity first."""
        return await self.messages.conversations(before, limit)

    # ---- kicks and pushes ----------------------------------------------------------------------

    async def _announce_revoked(self, token_digest: str) -> None:
        await self.broker.publish((TOKENS,), Envelope("revoked", "backend", frame={"digest": token_digest}))

    async def logout(self, token: str, who: Identity) -> None:
        await self.tokens.revoke(token)
        await self.broker.publish((who.channel,), kick_envelope(who.role, digest(token)))

    async def kick_agent(self, agent_id: int) -> None:
        """Close every socket of one agent, on every node (disabled, deleted, password changed)."""
        await self.broker.publish((agent_channel(agent_id),), kick_envelope("agent"))

    async def push(self, channel: str, frame: dict[str, Any]) -> int:
        """A backend push (docs/protocol.md §8): how many nodes hold a socket on `channel`."""
        (nodes,) = await self.broker.publish((channel,), push_envelope(frame))
        return nodes

    async def is_online(self, role: Role, key: str) -> bool:
        """Whether any process holds a socket for a user openid (or any agent, for role agent)."""
        channel = AGENTS if role == "agent" else user_channel(key)
        return channel in self.hub.channels or await self.broker.online(channel)
