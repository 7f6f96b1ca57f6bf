"""Where fan-out goes: the broker channels an event is published on, and its envelope.

Channels: `user:<openid>` (every socket of one user), `agents` (every agent socket),
`agent:<id>` (one agent's sockets, for kicks), `desk` (every node, always: assignment and presence
changes, which each node also keeps in its `core.team.Team`), `tokens` (every node, always: revoked
tokens), `node:<id>` (one node: answers to what it asked, kefu/asks.py); for page sockets `page:<uid>`,
`page:<uid>:<ticket digest>`, `uid:<id>`, `group:<name>` and `pages` (see core/push.py). A node
subscribes to a channel while it holds at least one socket for it, so a publish's receiver count
says whether anyone is online.

Envelopes travel as objects inside a process and are encoded once, by the Redis broker, at the wire.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal

from kefu import jsonio
from kefu.protocol import Message, Role, read_frame, resync_frame, typing_frame, user_channel
from kefu.values import value

AGENTS = "agents"
DESK = "desk"
TOKENS = "tokens"  # every node, always: revoked tokens' digests (store/token_cache.py)

Kind = Literal["message", "read", "kick", "push", "resync", "typing", "conversation", "presence",
               "page_push", "group", "answer", "revoked"]


@value
class Envelope:
    """One fan-out event. `side` is the role that caused it; `origin` the socket that sent it."""

    kind: Kind
    side: Role | Literal["backend"]
    origin: str = ""
    frame: dict[str, Any] = field(default_factory=dict)
    token_digest: str = ""

    def head(self) -> str:
        """The encoded envelope up to its frame: `head() + dumps(frame) + tail()` is `dumps()`."""
        return (f'{{"k":{jsonio.dumps(self.kind)},"s":{jsonio.dumps(self.side)},'
                f'"o":{jsonio.dumps(self.origin)},"f":')

    def tail(self) -> str:
        return f',"t":{jsonio.dumps(self.token_digest)}}}'

    def dumps(self) -> str:
        return self.head() + jsonio.dumps(self.frame) + self.tail()

    @classmethod
    def loads(cls, raw: str | bytes) -> Envelope:
        d = jsonio.load_object(raw)
        return cls(kind=d["k"], side=d["s"], origin=d["o"], frame=d["f"], token_digest=d["t"])


def message_envelope(m: Message, origin: str) -> Envelope:
    return Envelope("message", m.sender, origin, m.to_wire())


def read_envelope(openid: str, by: Role, upto: int, origin: str) -> Envelope:
    return Envelope("read", by, origin, read_frame(openid, by, upto))


def kick_envelope(side: Role, token_digest: str = "") -> Envelope:
    """Close sockets of one token (its digest), or of every token on the channel (empty)."""
    return Envelope("kick", side, token_digest=token_digest)


def resync_envelope(after: int) -> Envelope:
    """Messages at or below `after + 1` became visible late (a Redis reset): sync again from there."""
    return Envelope("resync", "backend", frame=resync_frame(after))


def conversation_channels(openid: str) -> tuple[str, str]:
    """A conversation's two audiences: its user's sockets and all agents."""
    return user_channel(openid), AGENTS


def audiences(m: Message) -> tuple[str, str]:
    """Where a message is relayed: (the user's channel, or "" for agent-only kinds; agents)."""
    return (user_channel(m.openid) if m.for_user else ""), AGENTS


def typing_envelope(openid: str, by: Role, agent: str | None, origin: str) -> Envelope:
    """Never stored: to the agents (from the user) or to the user's sockets (from an agent)."""
    return Envelope("typing", by, origin, typing_frame(openid, by, agent))


def typing_channel(openid: str, by: Role) -> str:
    return AGENTS if by == "user" else user_channel(openid)


def desk_envelope(frame: dict[str, Any]) -> Envelope:
    """A `conversation`, `presence` or `profile` frame for every node (its cache) and its team
    consoles (the `presence` kind carries every frame that is not a conversation's status)."""
    kind: Kind = "conversation" if frame.get("cmd") == "conversation" else "presence"
    return Envelope(kind, "agent", frame=frame)
