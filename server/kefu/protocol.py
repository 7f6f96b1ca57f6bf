"""WebSocket frames: parse, validate and serialise. Pure: no I/O, no clock, no globals.

The wire format is specified in docs/protocol.md; this module is its executable form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "agent"]

OPENID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
CMID_RE = re.compile(r"[\x21-\x7e]{1,64}")
SYNC_LIMIT_DEFAULT = 200
SYNC_LIMIT_MAX = 500


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
        """Stable key for client-message-id dedupe: one namespace per sender."""
        return f"u:{self.openid}" if self.role == "user" else f"a:{self.agent_id}"

    @property
    def channel(self) -> str:
        return f"user:{self.openid}" if self.role == "user" else f"agent:{self.agent_id}"


@dataclass(frozen=True, slots=True)
class Message:
    """A stored chat message; `to_wire` is the one shape used in live frames, sync and history."""

    id: int
    ts: int
    openid: str
    sender: Role
    msg: str
    agent_id: int | None = None
    agent: str | None = None
    cmid: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "ts": self.ts, "openid": self.openid, "from": self.sender, "msg": self.msg,
        }
        if self.sender == "agent":
            out["agent"] = self.agent
            out["agent_id"] = self.agent_id
        if self.cmid is not None:
            out["cmid"] = self.cmid
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Message:
        return cls(
            id=int(d["id"]), ts=int(d["ts"]), openid=d["openid"], sender=d["from"], msg=d["msg"],
            agent_id=d.get("agent_id"), agent=d.get("agent"), cmid=d.get("cmid"),
        )


# ---- client → server frames -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    openid: str
    msg: str
    cmid: str | None


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


ClientFrame = SendMessage | Ping | Sync | MarkRead


class ProtocolError(Exception):
    """A frame kefu refuses; `code` is one of the error codes in docs/protocol.md §4.4."""

    def __init__(self, code: str, message: str, cmid: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.cmid = cmid

    def frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.cmid)


def load_object(text: str) -> dict[str, Any]:
    """A text frame's JSON object, or `bad_json`: every frame a client sends is one."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise ProtocolError("bad_json", "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "frame must be a JSON object")
    return obj


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
        if not _is_int(after) or after < 0:
            raise ProtocolError("bad_frame", "sync.after must be a non-negative integer")
        limit = obj.get("limit", SYNC_LIMIT_DEFAULT)
        if not _is_int(limit) or not 1 <= limit <= SYNC_LIMIT_MAX:
            raise ProtocolError("bad_frame", f"sync.limit must be 1..{SYNC_LIMIT_MAX}")
        return Sync(after=after, limit=limit)
    if cmd == "read":
        upto = obj.get("upto")
        if upto is not None and (not _is_int(upto) or upto < 0):
            raise ProtocolError("bad_frame", "read.upto must be a non-negative integer")
        return MarkRead(openid=_conversation(obj, who), upto=upto)
    raise ProtocolError("unknown_cmd", f"unknown cmd {str(cmd)[:32]!r}")


def _parse_message(obj: dict[str, Any], who: Identity, max_message_bytes: int) -> SendMessage:
    cmid = obj.get("cmid")
    if cmid is not None and not (isinstance(cmid, str) and CMID_RE.fullmatch(cmid)):
        raise ProtocolError("bad_frame", "cmid must be 1-64 printable ASCII characters")
    raw_type = obj.get("type", 2 if who.role == "user" else 1)
    kind = int(raw_type) if isinstance(raw_type, str) and raw_type in ("1", "2") else raw_type
    if not _is_int(kind) or kind not in (1, 2):
        raise ProtocolError("unknown_type", "type must be 1 (agent → user) or 2 (user → agents)", cmid)
    if (kind == 1) != (who.role == "agent"):
        raise ProtocolError("forbidden", f"a {who.role} cannot send type {kind} messages", cmid)
    msg = obj.get("msg")
    if not isinstance(msg, str) or not msg:
        raise ProtocolError("bad_frame", "msg must be a non-empty string", cmid)
    if len(msg) > max_message_bytes // 4 and len(msg.encode("utf-8", "surrogatepass")) > max_message_bytes:
        raise ProtocolError("too_large", f"msg is over {max_message_bytes} bytes", cmid)
    try:
        msg.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("bad_frame", "msg is not valid Unicode (lone surrogate)", cmid) from None
    try:
        openid = _conversation(obj, who)
    except ProtocolError as e:
        e.cmid = cmid
        raise
    return SendMessage(openid=openid, msg=msg, cmid=cmid)


def _conversation(obj: dict[str, Any], who: Identity) -> str:
    """The conversation a frame is about: a user's own, or the one an agent names."""
    openid = obj.get("openid")
    if who.role == "user":
        if openid is not None and openid != who.openid:
            raise ProtocolError("forbidden", "a user can only speak in their own conversation")
        assert who.openid is not None
        return who.openid
    if not isinstance(openid, str) or not OPENID_RE.fullmatch(openid):
        raise ProtocolError("bad_frame", "openid must be 1-64 characters of A-Za-z0-9_-")
    return openid


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---- server → client frames -------------------------------------------------------------------


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: str, message: str, cmid: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"cmd": "error", "code": code, "message": message}
    if cmid is not None:
        out["cmid"] = cmid
    return out


def ack_frame(cmid: str, msg_id: int, ts: int, delivered: bool, dup: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"cmd": "ack", "cmid": cmid, "id": msg_id, "ts": ts, "delivered": delivered}
    if dup:
        out["dup"] = True
    return out


def hello_frame(who: Identity, heartbeat: float, max_message_bytes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"cmd": "hello", "role": who.role, "heartbeat": heartbeat,
                           "max_message_bytes": max_message_bytes}
    if who.role == "user":
        out["openid"] = who.openid
    else:
        out["agent"] = {"id": who.agent_id, "name": who.agent_name}
    return out


def read_frame(openid: str, by: Role, upto: int) -> dict[str, Any]:
    return {"cmd": "read", "openid": openid, "by": by, "upto": upto}


def sync_frame(after: int, messages: list[Message], more: bool) -> dict[str, Any]:
    return {"cmd": "sync", "after": after, "messages": [m.to_wire() for m in messages], "more": more}
