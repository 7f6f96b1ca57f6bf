"""The node: what the server does with an authenticated request, whatever socket or port it came on.

It owns this process's engines (broker, sequencer, journal, stores) and the hub, and holds the
rules for accepting a message: id and dedupe first, then fan-out, then durability, then the ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from kefu import metrics
from kefu.broker.base import Broker, Sequencer
from kefu.core.push import push_envelope
from kefu.core.routing import (
    AGENTS,
    Envelope,
    conversation_channels,
    message_envelope,
    read_envelope,
)
from kefu.core.session import CLOSE_GOING_AWAY, CLOSE_HEARTBEAT, CLOSE_UNAUTHORIZED, Limits
from kefu.hub import Hub
from kefu.journal.base import Journal, JournalUnavailable
from kefu.protocol import Identity, Message, Role, SendMessage, ack_frame, error_frame
from kefu.store.accounts import AccountStore
from kefu.store.messages import MessageStore
from kefu.store.tokens import TokenStore, digest

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Accepted:
    """A relayed message and the wait for its durability, which decides between ack and error."""

    message: Message
    durable: Awaitable[None] | None
    delivered: bool
    dup: bool = False

    async def outcome(self, cmid: str | None) -> dict[str, Any] | None:
        m = self.message
        if self.durable is not None:
            try:
                await self.durable
            except JournalUnavailable as e:
                return error_frame("unavailable", f"message not stored, resend it: {e}", cmid)
        if cmid is None:
            return None
        return ack_frame(cmid, m.id, m.ts, self.delivered, self.dup)


class Node:
    def __init__(self, *, broker: Broker, sequencer: Sequencer, journal: Journal, messages: MessageStore,
                 accounts: AccountStore, tokens: TokenStore, limits: Limits) -> None:
        self.broker = broker
        self.sequencer = sequencer
        self.journal = journal
        self.messages = messages
        self.accounts = accounts
        self.tokens = tokens
        self.limits = limits
        self.hub = Hub(broker)
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        await self.sequencer.raise_floor(await self.messages.max_id())
        await self.broker.start(self.hub.on_broker_message)
        await self.journal.start()
        self._sweeper = asyncio.create_task(self._sweep_idle())

    async def close_sockets(self) -> None:
        """First half of a drain: tell every socket we are going away."""
        for conn in self.hub.all_conns():
            conn.close_soon(CLOSE_GOING_AWAY, "server shutting down")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Second half: flush accepted messages to the database, then release the engines."""
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.journal.stop(flush_timeout)
        await self.broker.stop()

    async def _sweep_idle(self) -> None:
        period = min(5.0, max(0.2, self.limits.heartbeat_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now, wall = time.monotonic(), time.time()
            for conn in self.hub.all_conns():
                if conn.session.is_idle(now):
                    conn.close_soon(CLOSE_HEARTBEAT, "heartbeat timeout")
                elif conn.session.token_expired(wall):
                    conn.close_soon(CLOSE_UNAUTHORIZED, "token expired")

    # ---- messages ------------------------------------------------------------------------------

    async def accept(self, who: Identity, req: SendMessage, origin: str = "") -> Accepted:
        """Give the message an id, relay it at once, and start making it durable."""
        msg_id, ts, dup = await self.sequencer.claim(who.sender, req.cmid, now_ms())
        m = Message(id=msg_id, ts=ts, openid=req.openid, sender=who.role, msg=req.msg,
                    agent_id=who.agent_id, agent=who.agent_name, cmid=req.cmid)
        if dup:
            return Accepted(m, None, delivered=True, dup=True)
        durable = asyncio.ensure_future(self._append(who, m))
        to_user, to_agents = await self.broker.publish(conversation_channels(m.openid),
                                                        message_envelope(m, origin).dumps())
        metrics.MESSAGES_ACCEPTED.labels(who.role).inc()
        return Accepted(m, durable, delivered=(to_agents if who.role == "user" else to_user) > 0)

    async def _append(self, who: Identity, m: Message) -> None:
        try:
            await self.journal.append(m)
        except JournalUnavailable:
            if m.cmid is not None:
                with contextlib.suppress(Exception):
                    await self.sequencer.forget(who.sender, m.cmid)
            raise

    async def since(self, who: Identity, after: int, limit: int) -> tuple[list[Message], bool]:
        """Messages after `after` that `who` may see, stored or still in the journal, oldest first."""
        openid = who.openid if who.role == "user" else None
        stored = await self.messages.after(openid, after, limit + 1)
        pending = await self.journal.pending(openid, after)
        merged = sorted({m.id: m for m in [*stored, *pending]}.values(), key=lambda m: m.id)
        return merged[:limit], len(merged) > limit

    async def read_state(self, openid: str) -> dict[str, int]:
        """A user's read marks and unread count, counting agent messages still in the journal:
        a reply acked a moment ago is unread even before the writer has stored it."""
        marks = await self.messages.read_marks(openid)
        mark = marks["user_read_upto"]
        pending = {m.id for m in await self.journal.pending(openid, mark) if m.sender == "agent"}
        stored = await self.messages.count_from_agents(openid, mark, sorted(pending))
        return {"unread": stored + len(pending), **marks}

    async def mark_read(self, who: Identity, openid: str, upto: int | None, origin: str = "") -> int:
        if upto is None:
            latest = await self.messages.history(openid, None, 1)
            pending = await self.journal.pending(openid, 0)
            upto = max([m.id for m in latest + pending], default=0)
        upto = await self.messages.mark_read(openid, who.role, upto)
        envelope = read_envelope(openid, who.role, upto, origin)
        await self.broker.publish(conversation_channels(openid), envelope.dumps())
        return upto

    async def logout(self, token: str, who: Identity) -> None:
        await self.tokens.revoke(token)
        kick = Envelope("kick", who.role, token_digest=digest(token)).dumps()
        await self.broker.publish((who.channel,), kick)

    async def kick_agent(self, agent_id: int) -> None:
        """Close every socket of one agent on every node (4401): password changed, disabled, deleted."""
        kick = Envelope("kick", "agent", token_digest="").dumps()
        await self.broker.publish((f"agent:{agent_id}",), kick)

    async def push(self, channel: str, frame: dict[str, Any]) -> int:
        """A backend push (docs/protocol.md §8): how many nodes hold a socket on `channel`."""
        (nodes,) = await self.broker.publish((channel,), push_envelope(frame).dumps())
        return nodes

    async def is_online(self, role: Role, key: str) -> bool:
        """Whether any process holds a socket for a user openid (or any agent, for role agent)."""
        channel = AGENTS if role == "agent" else conversation_channels(key)[0]
        return channel in self.hub.channels or await self.broker.online(channel)
