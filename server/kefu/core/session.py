"""One socket's protocol state machine: validation, rate and error budgets, liveness, fan-out rules.

The WebSocket handler feeds it text and events and carries out what it returns, in the way
`websockets` keeps its protocol sans-I/O. Nothing here awaits or touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu.core.limits import Strikes, TokenBucket
from kefu.core.routing import AGENTS, Envelope
from kefu.protocol import ClientFrame, Identity, ProtocolError, SendMessage, parse

CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4401
CLOSE_HEARTBEAT = 4408
CLOSE_TOO_MANY_ERRORS = 4429
CLOSE_SLOW_CONSUMER = 4503


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    heartbeat_timeout: float
    rate_per_sec: float
    rate_burst: int
    error_strikes: int


class Session:
    def __init__(self, who: Identity, conn_id: str, v2: bool, limits: Limits, now: float,
                 token_digest: str = "") -> None:
        self.who = who
        self.conn_id = conn_id
        self.v2 = v2
        self.limits = limits
        self.token_digest = token_digest
        self.last_seen = now
        self._bucket = TokenBucket(limits.rate_per_sec, limits.rate_burst)
        self._strikes = Strikes(limits.error_strikes)

    def touch(self, now: float) -> None:
        """Any inbound frame, including a protocol-level ping, proves the client is alive."""
        self.last_seen = now

    def is_idle(self, now: float) -> bool:
        return now - self.last_seen > self.limits.heartbeat_timeout

    def token_expired(self, wall_now: float) -> bool:
        """A socket lives no longer than the token it was opened with."""
        return self.who.expires_at is not None and wall_now >= self.who.expires_at

    def receive(self, text: str, now: float) -> ClientFrame:
        """Parse and authorise one text frame; raises ProtocolError with the error to send."""
        self.touch(now)
        frame = parse(text, self.who, self.limits.max_message_bytes)
        if isinstance(frame, SendMessage) and not self._bucket.take(now):
            raise ProtocolError("rate_limited", "too many messages; slow down", frame.cmid)
        return frame

    def strike(self, now: float) -> bool:
        """Record an error sent to this socket; True when it has earned a 4429 close."""
        return self._strikes.hit(now)

    @property
    def channels(self) -> list[str]:
        """The broker channels this socket listens on: its own, and every agent's for agents."""
        return [self.who.channel, AGENTS] if self.who.role == "agent" else [self.who.channel]

    def frame_for(self, env: Envelope) -> dict[str, Any] | None:
        """What (if anything) this socket should receive for a fan-out envelope."""
        if env.origin == self.conn_id:
            return None
        if env.kind == "kick":
            return None
        same_side = env.side == self.who.role
        if same_side and not self.v2:
            return None
        if env.kind == "read" and not self.v2:
            return None
        return env.frame

    def kicked_by(self, env: Envelope) -> bool:
        return env.kind == "kick" and env.token_digest in ("", self.token_digest)
