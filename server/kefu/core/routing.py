"""Where fan-out goes: the broker channels an event is published on, and its envelope.

Channels: `user:<openid>` (every socket of one user), `agents` (every agent socket),
`agent:<id>` (one agent's sockets, for logout kicks); for QR pages `page:<uid>`, `page:<uid>:<ticket
digest>` and `pages` (see core/push.py). A node subscribes to a channel while it
holds at least one socket for it, so a publish's receiver count says whether anyone is online.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from kefu.protocol import Message, Role, read_frame

AGENTS = "agents"


def user_channel(openid: str) -> str:
    return f"user:{openid}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One fan-out event. `side` is the role that caused it; `origin` the socket that sent it."""

    kind: Literal["message", "read", "kick", "push"]
    side: Role | Literal["backend"]
    origin: str = ""
    frame: dict[str, Any] = field(default_factory=dict)
    token_digest: str = ""

    def dumps(self) -> str:
        return json.dumps(
            {"k": self.kind, "s": self.side, "o": self.origin, "f": self.frame, "t": self.token_digest},
            ensure_ascii=False, separators=(",", ":"),
        )

    @classmethod
    def loads(cls, raw: str | bytes) -> Envelope:
        d = json.loads(raw)
        return cls(kind=d["k"], side=d["s"], origin=d["o"], frame=d["f"], token_digest=d["t"])


def message_envelope(m: Message, origin: str) -> Envelope:
    return Envelope("message", m.sender, origin, m.to_wire())


def read_envelope(openid: str, by: Role, upto: int, origin: str) -> Envelope:
    return Envelope("read", by, origin, read_frame(openid, by, upto))


def conversation_channels(openid: str) -> tuple[str, str]:
    """A conversation's two audiences: its user's sockets and all agents."""
    return user_channel(openid), AGENTS
