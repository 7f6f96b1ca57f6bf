"""One error family for the whole server, and the close codes sockets end with.

The core raises a `KefuError`; each edge translates it once: HTTP answers `status` with
`{"error": code, "message"}` (and Retry-After when retryable), a socket sends
`{"cmd": "error", "code", "message", "retry"}`, the push port answers `fail`. `retryable` tells the
client to resend the same request later; `client_fault` is False only for infrastructure trouble,
which never counts against a socket's error budget. docs/protocol.md lists every code.

`translate` turns the infrastructure's own exceptions (a database or Redis that cannot be reached)
into `Unavailable`, so no edge has to know the drivers' exception types, and logs their cause for
the operator: the client only learns to retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any, ClassVar

import sqlalchemy.exc
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Close(IntEnum):
    """Every close code kefu sends (docs/protocol.md §5)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect with backoff
    INVALID_DATA = 1007  # a text frame that is not UTF-8
    TOO_BIG = 1009  # frame over KEFU_MAX_FRAME_BYTES (sent by the WebSocket layer)
    INTERNAL = 1011  # a frame could not be sent (a server bug): reconnect
    RESYNC = 1012  # legacy sockets after a broker outage: reconnect, fan-out may have gaps
    TRY_AGAIN = 1013  # a backing store is down at connect time: reconnect with backoff
    UNAUTHORIZED = 4401  # no/unknown/expired/revoked token: log in again, then reconnect
    HEARTBEAT = 4408  # silent longer than the heartbeat timeout
    BIND_TIMEOUT = 4410  # a QR page socket not bound within KEFU_QR_BIND_TIMEOUT: get a code, reconnect
    TOO_MANY_ERRORS = 4429  # the client kept sending bad frames: do not reconnect blindly
    SLOW_CONSUMER = 4503  # the client did not read and its send queue overflowed


class KefuError(Exception):
    """Something kefu refuses or cannot do. Subclasses fix the code, status and retryability."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    retryable: ClassVar[bool] = False
    #: False only for infrastructure trouble, which never counts against a client's error budget.
    client_fault: ClassVar[bool] = True

    def __init__(self, message: str = "", *, cmid: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.cmid = cmid
        self.retry_after = retry_after

    def frame(self) -> dict[str, Any]:
        """The socket form: an error frame (carrying the `cmid` it answers, if any)."""
        out: dict[str, Any] = {"cmd": "error", "code": self.code, "message": self.message,
                               "retry": self.retryable}
        if self.cmid is not None:
            out["cmid"] = self.cmid
        return out

    def body(self) -> dict[str, Any]:
        """The HTTP form: the status (`self.status`) and Retry-After say whether to retry."""
        return {"error": self.code, "message": self.message}


class BadRequest(KefuError):
    code = "bad_request"


class BadJson(KefuError):
    code = "bad_json"


class BadFrame(KefuError):
    code = "bad_frame"


class UnknownType(KefuError):
    code = "unknown_type"


class UnknownCmd(KefuError):
    code = "unknown_cmd"


class Binary(KefuError):
    code = "binary"


class BadTicket(KefuError):
    code = "bad_ticket"


class Unauthorized(KefuError):
    code, status = "unauthorized", 401


class Forbidden(KefuError):
    code, status = "forbidden", 403


class NotFound(KefuError):
    code, status = "not_found", 404


class Conflict(KefuError):
    code, status = "conflict", 409


class TooLarge(KefuError):
    code, status = "too_large", 413


class RateLimited(KefuError):
    """The client is going too fast: it may retry, after `retry_after` seconds."""

    code, status, retryable = "rate_limited", 429, True


class UpstreamRefused(KefuError):
    """WeChat answered with an errcode (the message carries it); retrying the same call won't help."""

    code, status = "wechat_error", 502


class Unavailable(KefuError):
    """A backing store (database, Redis, WeChat) cannot be reached: retry later, same request."""

    code, status, retryable = "unavailable", 503, True
    client_fault = False


class Internal(KefuError):
    """A bug in kefu (logged with its traceback). Not the client's fault, and resending the same
    request is unlikely to help."""

    code, status = "internal", 500
    client_fault = False


#: Driver errors that mean "could not reach or use the store", not "the query is wrong".
_SQL_UNAVAILABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                    sqlalchemy.exc.TimeoutError, sqlalchemy.exc.DisconnectionError)


def is_infrastructure(exc: BaseException) -> bool:
    """A database, Redis or network failure (retry later), as opposed to a bug or bad input."""
    return isinstance(exc, (RedisError, *_SQL_UNAVAILABLE, ConnectionError, TimeoutError,
                            asyncio.TimeoutError, OSError))


class OutageLog:
    """Infrastructure failures as the operator sees them: the first at once, then at most one line
    every `every` seconds, counting those in between, so an outage neither hides nor floods the
    log. Only the driver's own message is shown: SQLAlchemy's text adds the statement and its
    parameters, which may hold token digests."""

    def __init__(self, every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._next = float("-inf")
        self._quiet = 0

    def report(self, exc: BaseException) -> None:
        now = self._clock()
        if now < self._next:
            self._quiet += 1
            return
        more = f" ({self._quiet} more since the last report)" if self._quiet else ""
        self._next, self._quiet = now + self.every, 0
        cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig else exc
        text = (str(cause).splitlines() or [""])[0][:300]
        log.warning("a backing store failed, answered unavailable: %s: %s%s",
                    type(cause).__name__, text, more)


OUTAGES = OutageLog()


def translate(exc: BaseException) -> KefuError | None:
    """The `KefuError` an edge should report for `exc`, or None for a bug (the edge's last
    resort logs it and answers 500 / 1011). Each edge calls it once per failure."""
    if isinstance(exc, KefuError):
        return exc
    if is_infrastructure(exc):
        OUTAGES.report(exc)
        return Unavailable("a backing store is unavailable, retry later")
    return None


class Taken(Conflict):
    """A claim lost: someone else holds the conversation (`holder` says who, for the frame)."""

    code = "taken"

    def __init__(self, message: str = "", *, cmid: str | None = None, openid: str = "",
                 holder: dict[str, Any] | None = None) -> None:
        super().__init__(message, cmid=cmid)
        self.openid = openid
        self.holder = holder

    def frame(self) -> dict[str, Any]:
        return {**super().frame(), "openid": self.openid, "assignee": self.holder}

    def body(self) -> dict[str, Any]:
        return {**super().body(), "openid": self.openid, "assignee": self.holder}


class NotAssignee(Forbidden):
    """An agent acting on a conversation another agent holds (only its holder and admins may)."""

    code = "not_assignee"
