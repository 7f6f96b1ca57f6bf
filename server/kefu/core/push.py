"""Backend pushes: what a push request targets, and the channels QR pages listen on. Pure.

A QR page bound to `uid` with `ticket` holds three channels: `page:<uid>` (any push to that uid),
`page:<uid>:<ticket digest>` (pushes that carry the ticket: a wrong ticket reaches nobody, so the
publish count itself says "refused") and `pages` (broadcasts). A push to an openid goes to
`user:<openid>`, the channel every chat socket of that user holds.

The same rules serve `POST /api/push` and the TCP push port; docs/protocol.md §8 specifies them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from kefu.core.routing import Envelope
from kefu.errors import BadRequest
from kefu.protocol import is_openid, is_uid, user_channel

PAGES = "pages"
MAX_TICKET = 512


def page_channel(uid: str) -> str:
    return f"page:{uid}"


def ticket_digest(ticket: str) -> str:
    """Tickets stay out of channel names (and `PUBSUB CHANNELS`); 128 bits of their SHA-256 do."""
    return hashlib.sha256(ticket.encode()).hexdigest()[:32]


def page_ticket_channel(uid: str, ticket: str) -> str:
    return f"page:{uid}:{ticket_digest(ticket)}"


def page_channels(uid: str, ticket: str) -> list[str]:
    """Every channel a page bound to (uid, ticket) subscribes."""
    return [page_channel(uid), page_ticket_channel(uid, ticket), PAGES]


def push_envelope(frame: dict[str, Any]) -> Envelope:
    return Envelope("push", "backend", "", frame)


class PushError(BadRequest):
    """The push request is malformed or not allowed; HTTP says 400, the port says `fail`."""


@dataclass(frozen=True, slots=True)
class PushTarget:
    channel: str
    frame: dict[str, Any]  # what the receiving sockets get: the request minus `secret`
    kind: str  # "uid", "openid" or "broadcast" (for logs and metrics)


def norm_uid(value: object) -> str:
    """A uid is a string of 1-64 `A-Za-z0-9_-`; integers (older PHP backends) are accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not is_uid(value):
        raise PushError("uid must be 1-64 characters of A-Za-z0-9_- (or an integer)")
    return value


def norm_ticket(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TICKET:
        raise PushError(f"ticket must be a string of 1-{MAX_TICKET} characters")
    return value


def parse_push(obj: object, *, ticket_required: bool) -> PushTarget:
    """Which channel a push goes to. Precedence: `broadcast: true`, then `uid` (+ `ticket`), then
    `openid`; the other keys are data (a login push may well carry an `openid` next to its `uid`).

    `ticket_required`: the TCP port demands the ticket for a uid (the ticket is the capability a
    backend got with the QR code); `POST /api/push` is authenticated by its API key instead, so
    there the ticket is optional, but a wrong one still reaches nobody."""
    if not isinstance(obj, dict):
        raise PushError("a push must be a JSON object")
    frame = {k: v for k, v in obj.items() if k != "secret"}
    if obj.get("broadcast") is True:
        return PushTarget(PAGES, frame, "broadcast")
    if "uid" in obj:
        uid = norm_uid(obj["uid"])
        ticket = obj.get("ticket")
        if ticket is None:
            if ticket_required:
                raise PushError("a push to a uid must carry the ticket the page was bound with")
            return PushTarget(page_channel(uid), frame, "uid")
        return PushTarget(page_ticket_channel(uid, norm_ticket(ticket)), frame, "uid")
    if "openid" in obj:
        openid = obj["openid"]
        if not is_openid(openid):
            raise PushError("openid must be 1-64 characters of A-Za-z0-9_-")
        return PushTarget(user_channel(openid), frame, "openid")
    raise PushError("a push needs a target: uid (+ ticket), openid, or broadcast: true")
