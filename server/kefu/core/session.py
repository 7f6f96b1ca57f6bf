"""One socket's protocol, sans I/O: frames and events in (with the time), actions out.

The socket handler (ws/) feeds the session what arrived and carries out what it returns — frames
to send, a close with its code — the way `websockets` keeps its protocol apart from its asyncio
connection. Requests that need the node (a message to accept, a sync, a read mark) come back as
typed requests; their outcome goes in again (`accepted`, `synced`, `failed`) and turns into frames.
Nothing here awaits or touches the network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kefu.core.limits import Strikes, TokenBucket
from kefu.core.routing import AGENTS, Envelope
from kefu.core.team import Team
from kefu.errors import Binary, Close, KefuError, RateLimited
from kefu.protocol import (
    USER_KINDS,
    ClientFrame,
    Identity,
    JoinDesk,
    Message,
    Note,
    Ping,
    SendMessage,
    Typing,
    ack_frame,
    hello_frame,
    parse,
    pong_frame,
    resync_frame,
    sync_frame,
)
from kefu.values import value


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    heartbeat_timeout: float
    rate_per_sec: float
    rate_burst: int
    error_strikes: int
    typing_interval: float = 2.0  # at most one typing frame per conversation this often


@value
class Send:
    frame: dict[str, Any]


@value
class CloseWith:
    code: int
    reason: str


Action = Send | CloseWith


@value
class Accepted:
    """The journal's word on one message: durable under `message.id` (or a duplicate of it)."""

    message: Message
    delivered: bool
    dup: bool = False


class Session:
    """A chat socket (`/ws`) of a user or an agent."""

    def __init__(self, who: Identity, conn_id: str, v2: bool, limits: Limits, now: float,
                 token_digest: str = "", epoch: str = "", team: Team | None = None) -> None:
        self.who = who
        self.conn_id = conn_id
        self.v2 = v2
        self.limits = limits
        self.token_digest = token_digest
        self.epoch = epoch
        self.last_seen = now
        self._bucket = TokenBucket(limits.rate_per_sec, limits.rate_burst)
        self._strikes = Strikes(limits.error_strikes)
        self.team = team
        self.desk = False  # a team console: gets presence, status changes, typing, notes, events
        self.watch_all = False  # an admin following every conversation live
        self._typing: dict[str, float] = {}

    # ---- liveness ------------------------------------------------------------------------------

    def touch(self, now: float) -> None:
        """Anything from the client, including a protocol-level ping, proves it is alive."""
        self.last_seen = max(self.last_seen, now)

    def check(self, now: float, wall_now: float) -> CloseWith | None:
        """The periodic sweep: silent too long (4408), or the token's lifetime is over (4401)."""
        if now - self.last_seen > self.limits.heartbeat_timeout:
            return CloseWith(Close.HEARTBEAT, "heartbeat timeout")
        if self.who.expires_at is not None and wall_now >= self.who.expires_at:
            return CloseWith(Close.UNAUTHORIZED, "token expired")
        return None

    # ---- inbound -------------------------------------------------------------------------------

    def open(self) -> list[Action]:
        if not self.v2:
            return []
        return [Send(hello_frame(self.who, self.limits.heartbeat_timeout, self.limits.max_message_bytes,
                                 self.epoch))]

    def receive(self, data: str | bytes, now: float) -> tuple[list[Action], ClientFrame | None]:
        """One frame from the client: what to send right away, and the request for the node."""
        self.touch(now)
        try:
            if not isinstance(data, str):
                raise Binary("binary frames are not supported; send JSON text")
            frame = self.parse(data)
            # Pings are free: each costs one small frame back, bounded by the send queue.
            if not isinstance(frame, Ping) and not self._bucket.take(now):
                raise RateLimited("too many frames; slow down", cmid=getattr(frame, "cmid", None),
                                  retry_after=1 / max(self.limits.rate_per_sec, 0.001))
        except KefuError as e:
            return self.failed(e, now), None
        if isinstance(frame, Ping):
            return ([Send(pong_frame(int(time.time() * 1000)))] if self.v2 else []), None
        if isinstance(frame, Typing) and not self._typing_due(frame.openid, now):
            return [], None  # throttled: dropped, never an error
        if isinstance(frame, JoinDesk):
            self.desk = True
            self.watch_all = frame.all and self.who.admin
        return [], frame

    def _typing_due(self, openid: str, now: float) -> bool:
        last = self._typing.get(openid)
        if last is not None and now - last < self.limits.typing_interval:
            return False
        if len(self._typing) >= 64:
            self._typing.clear()
        self._typing[openid] = now
        return True

    def parse(self, text: str) -> ClientFrame:
        return parse(text, self.who, self.limits.max_message_bytes)

    # ---- outcomes of requests ------------------------------------------------------------------

    def accepted(self, req: SendMessage | Note, result: Accepted) -> list[Action]:
        if req.cmid is None:
            return []
        m = result.message
        return [Send(ack_frame(req.cmid, m.id, m.ts, result.delivered, result.dup))]

    def synced(self, after: int, messages: list[Message], more: bool) -> list[Action]:
        return [Send(sync_frame(after, messages, more, self.epoch))]

    def failed(self, err: KefuError, now: float) -> list[Action]:
        """An error frame; errors that are the client's fault count toward 4429, infrastructure
        trouble (`Unavailable`) never does."""
        actions: list[Action] = [Send(err.frame())]
        if err.client_fault and self._strikes.hit(now):
            actions.append(CloseWith(Close.TOO_MANY_ERRORS, "too many errors"))
        return actions

    # ---- fan-out -------------------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """The broker channels this socket listens on: its own, and every agent's for agents."""
        return [self.who.channel, AGENTS] if self.who.role == "agent" else [self.who.channel]

    def deliver(self, env: Envelope) -> list[Action]:
        """What this socket gets for a fan-out envelope."""
        if env.kind == "kick":
            if env.token_digest in ("", self.token_digest):
                return [CloseWith(Close.UNAUTHORIZED, "logged out")]
            return []
        if env.kind == "resync":
            return [Send(env.frame)] if self.v2 else []
        if env.origin == self.conn_id:
            return []
        if env.kind == "push":
            return [Send(env.frame)]
        if self.who.role == "agent" and not self._agent_gets(env):
            return []
        if env.kind == "typing":
            return [Send(env.frame)] if self.v2 and env.side != self.who.role else []
        if env.side == self.who.role and not self.v2:
            return []  # a legacy client would render its own side's frame as the other side's
        if env.kind == "read" and not self.v2:
            return []
        return [Send(env.frame)]

    def _agent_gets(self, env: Envelope) -> bool:
        """Team routing on an agent socket: status and presence frames, typing, notes and events
        only for team consoles (a seed-protocol client would show them as chat); a conversation's
        frames only if this agent follows it (core/team.py). Events go to every console (the
        queue and the views change for everyone)."""
        if env.kind in ("conversation", "presence"):
            return self.desk
        if env.kind == "typing" and not self.desk:
            return False
        kind = env.frame.get("kind", "text") if env.kind == "message" else "text"
        if kind not in USER_KINDS:
            if not self.desk:
                return False
            if kind == "event":
                return True
        openid = env.frame.get("openid")
        if self.team is None or not isinstance(openid, str):
            return True
        return self.team.follows(self.who.agent_id, self.watch_all, openid)

    def gap(self) -> list[Action]:
        """The broker connection was lost and is back: fan-out may have missed this socket. A v2
        client syncs; a legacy client cannot, so it is closed and reconnects (docs/protocol.md §5)."""
        if self.v2:
            return [Send(resync_frame())]
        return [CloseWith(Close.RESYNC, "reconnect: messages may have been missed")]
