"""The HTTP edge of the error family: every error is `{"error": code, "message"}` + its status.

`KefuError`s carry their status; Sanic's own (404 route, 405, 413, a malformed request) keep
theirs; a database or Redis that cannot be reached is 503 `unavailable` (with Retry-After); only a
bug is 500, logged with the path but never the query string (it may carry a token).
"""

from __future__ import annotations

import logging

from sanic import Request, json
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from kefu.errors import KefuError, translate

log = logging.getLogger("kefu.http")

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 408: "timeout", 413: "too_large", 429: "rate_limited",
         502: "wechat_error", 503: "unavailable"}


def error_response(request: Request, exc: Exception) -> HTTPResponse:
    err = translate(exc)
    if err is not None:
        return _respond(err)
    if isinstance(exc, SanicException):
        status = exc.status_code
        code = CODES.get(status, "error")
        message = str(exc) if status < 500 else code
        return json({"error": code, "message": message or code}, status=status)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json({"error": "internal", "message": "internal server error"}, status=500)


def _respond(err: KefuError) -> HTTPResponse:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    elif err.retryable:
        headers["Retry-After"] = "1"
    return json(err.body(), status=err.status, headers=headers)
