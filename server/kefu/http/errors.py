"""Every HTTP error is `{"error": code, "message": text}`; see docs/protocol.md §2."""

from __future__ import annotations

import math

from sanic import Request, json
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from kefu.errors import translate

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 413: "too_large", 502: "wechat_error", 503: "unavailable"}


class ApiError(SanicException):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message, status_code=status)
        self.code = code or CODES.get(status, "error")


def error_response(request: Request, exc: Exception) -> HTTPResponse:
    if not isinstance(exc, SanicException) and (known := translate(exc)) is not None:
        headers = ({"Retry-After": str(max(1, math.ceil(known.retry_after)))}
                   if known.retry_after is not None else None)
        return json(known.body(), status=known.status, headers=headers)
    if isinstance(exc, SanicException):
        status = exc.status_code
        code = getattr(exc, "code", None) or CODES.get(status, "error")
        return json({"error": code, "message": str(exc) or code}, status=status)
    request.app.ctx.log.exception("unhandled error on %s", request.path)
    return json({"error": "internal", "message": "internal server error"}, status=500)
