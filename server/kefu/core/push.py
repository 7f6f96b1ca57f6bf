"""Backend pushes: what a push request targets, and the channels page sockets listen on. Pure.

Page sockets (`/ws/qr`, `/ws/push`, core/page.py) hold, once bound:

- a QR login page bound to (`uid`, `ticket`): `page:<uid>` (any push to that uid over HTTP),
  `page:<uid>:<ticket digest>` (pushes that carry the ticket: a wrong ticket reaches nobody, so the
  publish count itself says "refused") and `pages` (broadcasts);
- a page bound with a signed token or a seed bind to a user id: `uid:<id>` (pushes to that uid or
  task id, and the group changes of that uid), `group:<name>` for each of its groups, and `pages`.

A push to an openid goes to `user:<openid>`, the channel every chat socket of that user holds.
Pushes to pages travel as `page_push` envelopes carrying `{"cmd": "push", "to", "data"}`: sockets
bound with a token (the SDK) get that whole frame, the older pages just `data` — so both kinds of
socket share one encoded frame each. The same rules serve `POST /api/push` and the TCP push port;
docs/protocol.md §8 and docs/push.md specify them.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from kefu.core.routing import Envelope
from kefu.errors import BadRequest
from kefu.protocol import is_openid, is_uid, user_channel
from kefu.values import value

PAGES = "pages"
MAX_TICKET = 512
MAX_NAME = 128  # a task id or a group name
MAX_GROUPS = 64  # groups per uid: the token's and the joined ones together
#: Keys of a push request that are kefu's, not the receiver's: removed before delivery.
CONTROL_KEYS = ("secret", "kefu")

To = Literal["uid", "group", "all"]


def page_channel(uid: str) -> str:
    return f"page:{uid}"


def ticket_digest(ticket: str) -> str:
    """Tickets stay out of channel names (and `PUBSUB CHANNELS`); 128 bits of their SHA-256 do."""
    return hashlib.sha256(ticket.encode()).hexdigest()[:32]


def page_ticket_channel(uid: str, ticket: str) -> str:
    return f"page:{uid}:{ticket_digest(ticket)}"


def page_channels(uid: str, ticket: str) -> list[str]:
    """Every channel a QR page bound to (uid, ticket) subscribes."""
    return [page_channel(uid), page_ticket_channel(uid, ticket), PAGES]


def uid_channel(uid: str) -> str:
    """Every page socket bound to a user id (signed or seed bind), on any node."""
    return f"uid:{uid}"


def group_channel(group: str) -> str:
    return f"group:{group}"


def push_envelope(frame: dict[str, Any]) -> Envelope:
    """A push as it is: to chat sockets (openid) and the QR login push."""
    return Envelope("push", "backend", "", frame)


def page_push_frame(data: dict[str, Any], to: To, group: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"cmd": "push", "to": to}
    if group is not None:
        frame["group"] = group
    frame["data"] = data
    return frame


def page_push_envelope(data: dict[str, Any], to: To, group: str | None = None) -> Envelope:
    return Envelope("page_push", "backend", "", page_push_frame(data, to, group))


def group_change_envelope(op: Literal["join", "leave"], group: str) -> Envelope:
    """To `uid:<id>`: every socket of that uid joins (or leaves) the group, on every node."""
    return Envelope("group", "backend", "", {"op": op, "group": group})


class PushError(BadRequest):
    """The push request is malformed or not allowed; HTTP says 400, the port says `fail`."""


def norm_uid(value: object) -> str:
    """A uid is a string of 1-64 `A-Za-z0-9_-`; integers (older PHP backends) are accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not is_uid(value):
        raise PushError("uid must be 1-64 characters of A-Za-z0-9_- (or an integer)")
    return value


def norm_name(value: object, what: str) -> str:
    """A task id or group name: 1-128 printable characters (spaces and Chinese are fine, control
    characters are not), or an integer — GatewayWorker ids are whatever the page sent."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME or not value.isprintable():
        raise PushError(f"{what} must be 1-{MAX_NAME} printable characters (or an integer)")
    return value


def norm_group(value: object) -> str:
    return norm_name(value, "group")


def norm_ticket(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TICKET:
        raise PushError(f"ticket must be a string of 1-{MAX_TICKET} characters")
    return value


@value
class PushTarget:
    channels: tuple[str, ...]
    frame: dict[str, Any]  # the receiver's data: the request minus `secret` and `kefu`
    kind: str  # "broadcast", "group", "qr" (uid + ticket), "uid", "task_id", "openid": logs, metrics
    group: str | None = None

    @property
    def channel(self) -> str:
        """The first (for a uid over HTTP: the QR page's) channel."""
        return self.channels[0]

    def envelope(self) -> Envelope:
        if self.kind == "openid":
            return push_envelope(self.frame)
        to: To = "all" if self.kind == "broadcast" else "group" if self.kind == "group" else "uid"
        return page_push_envelope(self.frame, to, self.group)


def parse_push(obj: object, *, ticket_required: bool) -> PushTarget:
    """Which channels a push goes to. Precedence: `broadcast: true`, `group`, `uid` (+ `ticket`),
    `task_id`, then `openid`; the other keys are data (a login push may well carry an `openid`
    next to its `uid`).

    `ticket_required` (the TCP port): a uid reaches a QR page only with the ticket the page was
    bound with (the ticket is the capability a backend got with the QR code); without it, only the
    pages bound to that uid with a token or a seed bind. `POST /api/push` is authenticated by its
    API key instead, so there a uid without ticket reaches the uid's QR page too."""
    if not isinstance(obj, dict):
        raise PushError("a push must be a JSON object")
    frame = {k: v for k, v in obj.items() if k not in CONTROL_KEYS}
    if obj.get("broadcast") is True:
        return PushTarget((PAGES,), frame, "broadcast")
    if "group" in obj:
        group = norm_group(obj["group"])
        return PushTarget((group_channel(group),), frame, "group", group)
    if "uid" in obj:
        uid = norm_uid(obj["uid"])
        ticket = obj.get("ticket")
        if ticket is not None:
            return PushTarget((page_ticket_channel(uid, norm_ticket(ticket)),), frame, "qr")
        if ticket_required:
            return PushTarget((uid_channel(uid),), frame, "uid")
        return PushTarget((page_channel(uid), uid_channel(uid)), frame, "uid")
    if "task_id" in obj:
        return PushTarget((uid_channel(norm_name(obj["task_id"], "task_id")),), frame, "task_id")
    if "openid" in obj:
        openid = obj["openid"]
        if not is_openid(openid):
            raise PushError("openid must be 1-64 characters of A-Za-z0-9_-")
        return PushTarget((user_channel(openid),), frame, "openid")
    raise PushError("a push needs a target: uid (+ ticket), task_id, group, openid, or broadcast: true")
