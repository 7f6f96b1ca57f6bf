"""A QR login page's socket (`/ws/qr`): its frames and its state machine. Pure, like `Session`.

The page sends the JSON it got from `GET /qrcode` — `{"ticket", "expire_seconds", "uid"}` — and
the server binds the socket to the uid once the ticket checks out (that check needs the store, so
the handler does it and then calls `bind`). Liveness, error strikes and the rate budget are the chat
session's: `PageSession` is a `Session` with another parser and other fan-out rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu.core.push import PushError, norm_ticket, norm_uid, page_channels
from kefu.core.routing import Envelope
from kefu.core.session import Action, CloseWith, Limits, Send, Session
from kefu.errors import BadFrame, Close, TooLarge, UnknownCmd
from kefu.jsonio import load_object
from kefu.protocol import Identity, Ping

MAX_PAGE_FRAME = 4096  # a bind frame is ~150 bytes
PAGE = Identity(role="page")  # type: ignore[arg-type]  # not a token identity: pages are anonymous


@dataclass(frozen=True, slots=True)
class Bind:
    uid: str
    ticket: str
    raw: dict[str, Any]  # echoed back on success, as the older pages expect


PageFrame = Bind | Ping


def parse_page_frame(text: str) -> PageFrame:
    if len(text) > MAX_PAGE_FRAME:
        raise TooLarge(f"page frames are at most {MAX_PAGE_FRAME} characters")
    obj = load_object(text)
    cmd = obj.get("cmd")
    if cmd is not None:
        if cmd == "ping":
            return Ping()
        raise UnknownCmd(f"unknown cmd {str(cmd)[:32]!r}")
    if "uid" not in obj or "ticket" not in obj:
        raise BadFrame('send {"ticket", "expire_seconds", "uid"} from GET /qrcode, or {"cmd": "ping"}')
    try:
        return Bind(uid=norm_uid(obj["uid"]), ticket=norm_ticket(obj["ticket"]), raw=obj)
    except PushError as e:
        raise BadFrame(e.message) from None


class PageSession(Session):
    def __init__(self, conn_id: str, v2: bool, limits: Limits, now: float) -> None:
        super().__init__(PAGE, conn_id, v2, limits, now)
        self.uid: str | None = None
        self.ticket: str | None = None

    def open(self) -> list[Action]:
        return []

    def parse(self, text: str) -> PageFrame:  # type: ignore[override]
        return parse_page_frame(text)

    def is_bound_to(self, uid: str, ticket: str) -> bool:
        return self.uid == uid and self.ticket == ticket

    def bind(self, bind: Bind) -> list[Action]:
        """Only after the ticket was checked against the store (the handler's job): echo it."""
        self.uid, self.ticket = bind.uid, bind.ticket
        return [Send(bind.raw)]

    @property
    def channels(self) -> list[str]:
        """What the hub subscribes for this socket: nothing until bound."""
        if self.uid is None or self.ticket is None:
            return []
        return page_channels(self.uid, self.ticket)

    def deliver(self, env: Envelope) -> list[Action]:
        return [Send(env.frame)] if env.kind == "push" else []

    def gap(self) -> list[Action]:
        """A page that may have missed its login push reconnects and binds again."""
        return [CloseWith(Close.RESYNC, "reconnect: a push may have been missed")] if self.uid else []
