"""A page's socket (`/ws/qr`, `/ws/push`): its frames and its state machine. Pure, like `Session`.

A page binds one of three ways, and receives pushes only once bound:

- **QR login** — the JSON from `GET /qrcode`, `{"ticket", "expire_seconds", "uid"}`; bound once
  the ticket is the uid's live one (the handler checks the store), then echoed back.
- **Signed** — `{"cmd": "bind", "token": "<JWT>"}` with a bind token the site's backend minted
  (push/tokens.py); bound to the token's uid and groups, answered `{"cmd": "bound", …}`.
- **Seed** — what Workerman and GatewayWorker pages sent: the bare uid as the first text frame
  (`/ws/push` only), or `{"type": "init", "task_id": "…"}`. Only with KEFU_PUSH_SEED_BINDS: anyone
  who knows an id receives its pushes.

Liveness, error strikes and the rate budget are the chat session's (`PageSession` is a `Session`
with another parser and other fan-out rules), and the bind deadline (ws/qr.py) applies to every
kind: an anonymous socket binds soon or goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kefu.core.push import (
    MAX_GROUPS,
    PAGES,
    PushError,
    group_channel,
    norm_name,
    norm_ticket,
    norm_uid,
    page_channels,
    uid_channel,
)
from kefu.core.routing import Envelope
from kefu.core.session import Action, CloseWith, Limits, Send, Session
from kefu.errors import BadFrame, BadJson, Close, TooLarge, UnknownCmd
from kefu.jsonio import load_object
from kefu.protocol import Identity, Ping

if TYPE_CHECKING:
    import asyncio

MAX_PAGE_FRAME = 4096  # a QR bind frame is ~150 bytes, a bind token with a few groups ~400
PAGE = Identity(role="page")  # type: ignore[arg-type]  # not a token identity: pages are anonymous
GATEWAY_HEARTBEATS = ("ping", "pong")  # GatewayWorker pages' {"type": "ping"} heartbeats


@dataclass(frozen=True, slots=True)
class Bind:
    """A QR login page's bind."""

    uid: str
    ticket: str
    raw: dict[str, Any]  # echoed back on success, as the older pages expect


@dataclass(frozen=True, slots=True)
class TokenBind:
    token: str


@dataclass(frozen=True, slots=True)
class SeedBind:
    uid: str
    how: Literal["uid", "task_id"]  # a bare uid (Workerman) or {"type": "init"} (GatewayWorker)


@dataclass(frozen=True, slots=True)
class Ignored:
    """Text after a page bound on `/ws/push`: Workerman read only the first frame as the uid."""


PageFrame = Bind | TokenBind | SeedBind | Ping | Ignored


def _bare_uid(text: str) -> SeedBind:
    try:
        return SeedBind(norm_uid(text), "uid")
    except PushError:
        raise BadFrame("send a bind frame (docs/push.md): a JSON object, or your uid as plain text "
                       "(1-64 characters of A-Za-z0-9_-)") from None


def parse_page_frame(text: str, *, bare_text: bool = False, bound: bool = False) -> PageFrame:
    """One text frame from a page. `bare_text` (on `/ws/push`): a frame that is not a JSON object is
    a uid sent as plain text — the bind of a Workerman page, or ignored once `bound`."""
    if len(text) > MAX_PAGE_FRAME:
        raise TooLarge(f"page frames are at most {MAX_PAGE_FRAME} characters")
    try:
        obj = load_object(text)
    except BadJson:
        if not bare_text or text.lstrip()[:1] in ("{", "["):
            raise
        return Ignored() if bound else _bare_uid(text)
    cmd = obj.get("cmd")
    if cmd is not None:
        if cmd == "ping":
            return Ping()
        if cmd == "bind":
            token = obj.get("token")
            if not isinstance(token, str) or not 1 <= len(token) <= MAX_PAGE_FRAME:
                raise BadFrame('a bind frame is {"cmd": "bind", "token": "<bind token>"}')
            return TokenBind(token)
        raise UnknownCmd(f"unknown cmd {str(cmd)[:32]!r}")
    if "uid" in obj and "ticket" in obj:
        try:
            return Bind(uid=norm_uid(obj["uid"]), ticket=norm_ticket(obj["ticket"]), raw=obj)
        except PushError as e:
            raise BadFrame(e.message) from None
    kind = obj.get("type")
    if kind in GATEWAY_HEARTBEATS:
        return Ping()
    if kind == "init" and "task_id" in obj:
        try:
            return SeedBind(norm_name(obj["task_id"], "task_id"), "task_id")
        except PushError as e:
            raise BadFrame(e.message) from None
    raise BadFrame('send {"cmd": "bind", "token"}, {"ticket", "expire_seconds", "uid"} from '
                   'GET /qrcode, {"type": "init", "task_id"}, or {"cmd": "ping"}')


@dataclass(frozen=True, slots=True)
class Binding:
    how: Literal["qr", "token", "seed"]
    uid: str
    ticket: str | None = None  # QR binds
    groups: tuple[str, ...] = field(default=())


#: Makes the socket join or leave a group (I/O: its subscriptions), as a task that ends once done.
GroupHook = Callable[[str, str], "asyncio.Task[None]"]


class PageSession(Session):
    def __init__(self, conn_id: str, v2: bool, limits: Limits, now: float, *,
                 bare_text: bool = False) -> None:
        super().__init__(PAGE, conn_id, v2, limits, now)
        self.bare_text = bare_text
        self.binding: Binding | None = None
        #: Called with ("join" | "leave", group) when the backend changes this uid's groups
        #: (push/service.py); the handler changes the socket's subscriptions (I/O), then calls
        #: `joined` / `left`.
        self.on_group: GroupHook | None = None

    @property
    def uid(self) -> str | None:
        return self.binding.uid if self.binding else None

    @property
    def ticket(self) -> str | None:
        return self.binding.ticket if self.binding else None

    @property
    def groups(self) -> tuple[str, ...]:
        return self.binding.groups if self.binding else ()

    def open(self) -> list[Action]:
        return []

    def parse(self, text: str) -> PageFrame:  # type: ignore[override]
        return parse_page_frame(text, bare_text=self.bare_text, bound=self.binding is not None)

    def is_bound_to(self, uid: str, ticket: str) -> bool:
        return self.uid == uid and self.ticket == ticket

    # ---- binding (the handler checked the ticket or the token first) -------------------------

    def bind(self, bind: Bind) -> list[Action]:
        """A QR bind whose ticket checked out: echo it."""
        self.binding = Binding("qr", bind.uid, bind.ticket)
        return [Send(bind.raw)]

    def bind_uid(self, how: Literal["token", "seed"], uid: str, groups: tuple[str, ...] = ()) -> None:
        """Bound to a user id (a checked token, or a seed bind the settings allow), with groups;
        `bound_frame` is the answer once the stored groups are joined too."""
        self.binding = Binding(how, uid, None, tuple(dict.fromkeys(groups))[:MAX_GROUPS])

    def bound_frame(self) -> list[Action]:
        """Signed binds (the SDK) and v2 sockets are told; older seed pages expect nothing."""
        b = self.binding
        if b is None or (b.how == "seed" and not self.v2):
            return []
        return [Send({"cmd": "bound", "uid": b.uid, "groups": list(b.groups)})]

    def joined(self, group: str) -> list[Action]:
        """The socket is now in `group` (the caller subscribes its channel)."""
        b = self.binding
        if b is None or group in b.groups or len(b.groups) >= MAX_GROUPS:
            return []
        self.binding = Binding(b.how, b.uid, b.ticket, (*b.groups, group))
        return self._told("joined", group)

    def left(self, group: str) -> list[Action]:
        b = self.binding
        if b is None or group not in b.groups:
            return []
        self.binding = Binding(b.how, b.uid, b.ticket, tuple(g for g in b.groups if g != group))
        return self._told("left", group)

    def _told(self, cmd: str, group: str) -> list[Action]:
        b = self.binding
        if b is None or (b.how == "seed" and not self.v2):
            return []
        return [Send({"cmd": cmd, "group": group, "groups": list(b.groups)})]

    @property
    def channels(self) -> list[str]:
        """What the hub subscribes for this socket: nothing until bound."""
        b = self.binding
        if b is None:
            return []
        if b.how == "qr":
            assert b.ticket is not None
            return page_channels(b.uid, b.ticket)
        return [uid_channel(b.uid), *(group_channel(g) for g in b.groups), PAGES]

    # ---- fan-out -------------------------------------------------------------------------------

    def deliver(self, env: Envelope) -> list[Action]:
        b = self.binding
        if b is None:
            return []
        if env.kind == "push":
            return [Send(env.frame)]
        if env.kind == "page_push":  # {"cmd": "push", "to", "data"}: the SDK's form, or just data
            return [Send(env.frame if b.how == "token" else env.frame["data"])]
        return []

    def gap(self) -> list[Action]:
        """A page that may have missed a push reconnects and binds again."""
        return [CloseWith(Close.RESYNC, "reconnect: a push may have been missed")] if self.binding else []
