"""WebSocket frames: parse, validate and serialise. Pure: no I/O, no clock, no globals.

The wire format is specified in docs/protocol.md; this module is its executable form. Every
identifier rule (openid, cmid, ids) lives here and every caller uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from kefu.errors import BadFrame, Forbidden, KefuError, TooLarge, UnknownCmd, UnknownType
from kefu.jsonio import load_object
from kefu.values import value

Role = Literal["user", "agent"]

OPENID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # WeChat openids; QR uids use the same alphabet
CMID_RE = re.compile(r"[\x21-\x7e]{1,64}")
SYNC_LIMIT_DEFAULT = 200
SYNC_LIMIT_MAX = 500
MAX_ID = 2**63 - 1  # ids, cursors and read marks are BIGINT


def is_openid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and OPENID_RE.fullmatch(value) is not None


def is_uid(value: object) -> TypeGuard[str]:
    """A push target / QR page uid: 1-64 characters of A-Za-z0-9_- (as openids)."""
    return is_openid(value)


def is_id(value: object) -> bool:
    """A message id, cursor or read mark: an integer in 0..2^63-1 (JSON booleans are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def sender_key(role: Role, openid: str | None, agent_id: int | None) -> str:
    """Stable key for client-message-id dedupe: one namespace per sender."""
    return f"u:{openid}" if role == "user" else f"a:{agent_id}"


def user_channel(openid: str) -> str:
    """Every socket of one mini-program user listens here."""
    return f"user:{openid}"


def agent_channel(agent_id: int | None) -> str:
    """Every socket of one agent listens here (logout and disable kicks)."""
    return f"agent:{agent_id}"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token (and so a socket) speaks as; the server decides it, never the client."""

    role: Role
    openid: str | None = None
    agent_id: int | None = None
    agent_name: str | None = None
    expires_at: int | None = field(default=None, compare=False)  # of the token it came from
    admin: bool = False  # an agent that may use the admin API (docs/protocol.md §9)

    @property
    def sender(self) -> str:
        return sender_key(self.role, self.openid, self.agent_id)

    @property
    def channel(self) -> str:
        return user_channel(self.openid or "") if self.role == "user" else agent_channel(self.agent_id)


#: Message kinds the user sees (in live frames, sync, history, unread counts). Every other kind —
#: `note` (an agent's private note), `event` (a status change) — is for agents only.
USER_KINDS = ("text", "image", "card")


@value
class Message:
    """A conversation entry; `to_wire` is the one shape used in live frames, sync and history.

    `msg` is always text a legacy client can show (an image's is a placeholder); `kind` says what
    it is and `meta` carries what that kind needs (docs/protocol.md §4.1)."""

    id: int
    ts: int
    openid: str
    sender: Role
    msg: str
    agent_id: int | None = None
    agent: str | None = None
    cmid: str | None = None
    kind: str = "text"
    meta: dict[str, Any] | None = None

    @property
    def sender_key(self) -> str:
        return sender_key(self.sender, self.openid, self.agent_id)

    @property
    def for_user(self) -> bool:
        return self.kind in USER_KINDS

    def with_id(self, msg_id: int, ts: int | None = None) -> Message:
        # Field by field: `dataclasses.replace` reads the class's fields on every call (1.5 µs, not 0.3).
        return Message(msg_id, self.ts if ts is None else ts, self.openid, self.sender, self.msg,
                       self.agent_id, self.agent, self.cmid, self.kind, self.meta)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "ts": self.ts, "openid": self.openid, "from": self.sender, "msg": self.msg,
        }
        if self.sender == "agent":
            out["agent"] = self.agent
            out["agent_id"] = self.agent_id
        if self.cmid is not None:
            out["cmid"] = self.cmid
        if self.kind != "text":
            out["kind"] = self.kind
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Message:
        return cls(
            id=int(d["id"]), ts=int(d["ts"]), openid=d["openid"], sender=d["from"], msg=d["msg"],
            agent_id=d.get("agent_id"), agent=d.get("agent"), cmid=d.get("cmid"),
            kind=d.get("kind", "text"), meta=d.get("meta"),
        )


# ---- client → server frames -------------------------------------------------------------------


@value
class SendMessage:
    """A chat message; with `image` (an id from `POST /api/media`) a picture, whose `msg` is the
    placeholder legacy clients show."""

    openid: str
    msg: str
    cmid: str | None
    image: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Sync:
    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class MarkRead:
    openid: str
    upto: int | None


@dataclass(frozen=True, slots=True)
class Typing:
    """The sender is typing in `openid`'s conversation: relayed, throttled, never stored."""

    openid: str


@dataclass(frozen=True, slots=True)
class Note:
    """An agent's private note in a conversation: stored (kind `note`), never shown to the user."""

    openid: str
    msg: str
    cmid: str | None


Lifecycle = Literal["claim", "release", "resolve", "reopen", "transfer"]


@dataclass(frozen=True, slots=True)
class ChangeStatus:
    """Claim from the queue, put back, resolve, reopen, or transfer (to `to`, with a `note`)."""

    action: Lifecycle
    openid: str
    cmid: str | None = None
    to: int | None = None
    note: str = ""


PRESENCE = ("online", "away")


@dataclass(frozen=True, slots=True)
class SetPresence:
    status: str


@dataclass(frozen=True, slots=True)
class JoinDesk:
    """A team console opts in to team frames (presence, status changes, typing, notes, events);
    `all`: an admin follows every conversation live, not only their own and the queue."""

    all: bool


ClientFrame = (SendMessage | Ping | Sync | MarkRead | Typing | Note | ChangeStatus | SetPresence
               | JoinDesk)
IMAGE_PLACEHOLDER = "[图片]"  # the `msg` of a picture: what a client that knows no `kind` shows
MEDIA_ID_RE = re.compile(r"[0-9a-f]{32}")
AGENT_ONLY_CMDS = ("note", "claim", "release", "resolve", "reopen", "transfer", "presence", "desk")
NOTE_MAX = 4000  # characters of a transfer note


def parse(text: str, who: Identity, max_message_bytes: int) -> ClientFrame:
    """Turn one text frame into a typed request that `who` is allowed to make, or raise."""
    obj = load_object(text)
    cmd = obj.get("cmd")
    if cmd is not None:
        return _parse_cmd(cmd, obj, who)
    return _parse_message(obj, who, max_message_bytes)


def _parse_cmd(cmd: object, obj: dict[str, Any], who: Identity) -> ClientFrame:
    if cmd == "ping":
        return Ping()
    if cmd == "sync":
        after = obj.get("after", 0)
        if not is_id(after):
            raise BadFrame(f"sync.after must be an integer in 0..{MAX_ID}")
        limit = obj.get("limit", SYNC_LIMIT_DEFAULT)
        if not is_id(limit) or not 1 <= limit <= SYNC_LIMIT_MAX:
            raise BadFrame(f"sync.limit must be 1..{SYNC_LIMIT_MAX}")
        return Sync(after=after, limit=limit)
    if cmd == "read":
        upto = obj.get("upto")
        if upto is not None and not is_id(upto):
            raise BadFrame(f"read.upto must be an integer in 0..{MAX_ID}")
        return MarkRead(openid=conversation_of(obj.get("openid"), who), upto=upto)
    if cmd == "typing":
        return Typing(openid=conversation_of(obj.get("openid"), who))
    if cmd in AGENT_ONLY_CMDS:
        if who.role != "agent":
            raise Forbidden(f"only agents may send {cmd}", cmid=_cmid(obj))
        return _parse_agent_cmd(str(cmd), obj, who)
    raise UnknownCmd(f"unknown cmd {str(cmd)[:32]!r}")


def _cmid(obj: dict[str, Any]) -> str | None:
    cmid = obj.get("cmid")
    if cmid is not None and not (isinstance(cmid, str) and CMID_RE.fullmatch(cmid)):
        raise BadFrame("cmid must be 1-64 printable ASCII characters")
    return cmid


def _parse_agent_cmd(cmd: str, obj: dict[str, Any], who: Identity) -> ClientFrame:
    if cmd == "presence":
        status = obj.get("status")
        if status not in PRESENCE:
            raise BadFrame("presence.status must be \"online\" or \"away\"")
        return SetPresence(status=str(status))
    if cmd == "desk":
        flag = obj.get("all", False)
        if not isinstance(flag, bool):
            raise BadFrame("desk.all must be true or false")
        return JoinDesk(all=flag)
    cmid = _cmid(obj)
    try:
        openid = conversation_of(obj.get("openid"), who)
        if cmd == "note":
            msg = obj.get("msg")
            if not isinstance(msg, str) or not msg.strip():
                raise BadFrame("msg must be a non-empty string")
            if len(msg) > NOTE_MAX:
                raise TooLarge(f"a note has at most {NOTE_MAX} characters")
            return Note(openid=openid, msg=msg, cmid=cmid)
        if cmd == "transfer":
            to = obj.get("to")
            if not isinstance(to, int) or isinstance(to, bool) or not 1 <= to < 2**31:
                raise BadFrame("transfer.to must be an agent id")
            note = obj.get("note", "")
            if not isinstance(note, str) or len(note) > NOTE_MAX:
                raise BadFrame(f"transfer.note must be a string of at most {NOTE_MAX} characters")
            return ChangeStatus("transfer", openid, cmid, to=to, note=note.strip())
    except KefuError as e:
        e.cmid = cmid
        raise
    action: Lifecycle = cmd  # type: ignore[assignment]
    return ChangeStatus(action, openid, cmid)


def _parse_message(obj: dict[str, Any], who: Identity, max_message_bytes: int) -> SendMessage:
    cmid = obj.get("cmid")
    if cmid is not None and not (isinstance(cmid, str) and CMID_RE.fullmatch(cmid)):
        raise BadFrame("cmid must be 1-64 printable ASCII characters")
    try:
        raw_type = obj.get("type", 2 if who.role == "user" else 1)
        kind = int(raw_type) if isinstance(raw_type, str) and raw_type in ("1", "2") else raw_type
        if not is_id(kind) or kind not in (1, 2):
            raise UnknownType("type must be 1 (agent → user) or 2 (user → agents)")
        if (kind == 1) != (who.role == "agent"):
            raise Forbidden(f"a {who.role} cannot send type {kind} messages")
        image = obj.get("image")
        if image is not None:
            if not isinstance(image, str) or not MEDIA_ID_RE.fullmatch(image):
                raise BadFrame("image must be the id POST /api/media returned")
            openid = conversation_of(obj.get("openid"), who)
            return SendMessage(openid=openid, msg=IMAGE_PLACEHOLDER, cmid=cmid, image=image)
        msg = obj.get("msg")
        if not isinstance(msg, str) or not msg:
            raise BadFrame("msg must be a non-empty string")
        if len(msg) > max_message_bytes // 4 and len(msg.encode("utf-8")) > max_message_bytes:
            raise TooLarge(f"msg is over {max_message_bytes} bytes")
        openid = conversation_of(obj.get("openid"), who)
    except KefuError as e:
        e.cmid = cmid
        raise
    return SendMessage(openid=openid, msg=msg, cmid=cmid)


def conversation_of(openid: object, who: Identity) -> str:
    """The conversation a request is about: a user's own, or the one an agent names."""
    if who.role == "user":
        if openid is not None and openid != who.openid:
            raise Forbidden("a user can only speak in their own conversation")
        assert who.openid is not None
        return who.openid
    if not is_openid(openid):
        raise BadFrame("openid must be 1-64 characters of A-Za-z0-9_-")
    assert isinstance(openid, str)
    return openid


# ---- server → client frames -------------------------------------------------------------------


def ack_frame(cmid: str, msg_id: int, ts: int, delivered: bool, dup: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"cmd": "ack", "cmid": cmid, "id": msg_id, "ts": ts, "delivered": delivered}
    if dup:
        out["dup"] = True
    return out


def hello_frame(who: Identity, heartbeat: float, max_message_bytes: int, epoch: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cmd": "hello", "role": who.role, "heartbeat": heartbeat,
                           "max_message_bytes": max_message_bytes, "epoch": epoch}
    if who.role == "user":
        out["openid"] = who.openid
    else:
        out["agent"] = {"id": who.agent_id, "name": who.agent_name}
    return out


def pong_frame(ts_ms: int) -> dict[str, Any]:
    return {"cmd": "pong", "ts": ts_ms}


def read_frame(openid: str, by: Role, upto: int) -> dict[str, Any]:
    return {"cmd": "read", "openid": openid, "by": by, "upto": upto}


def sync_frame(after: int, messages: list[Message], more: bool, epoch: str) -> dict[str, Any]:
    return {"cmd": "sync", "after": after, "messages": [m.to_wire() for m in messages], "more": more,
            "epoch": epoch}


def resync_frame(after: int | None = None) -> dict[str, Any]:
    """Fan-out to this socket may have had a gap: sync again (from `after` if it is lower)."""
    return {"cmd": "resync"} if after is None else {"cmd": "resync", "after": after}


def typing_frame(openid: str, by: Role, agent: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"cmd": "typing", "openid": openid, "from": by}
    if agent is not None:
        out["agent"] = agent
    return out
