"""Request bodies: every JSON endpoint takes one JSON object, and says so with a 400 otherwise."""

from __future__ import annotations

from typing import Any

from sanic import Request

from kefu.http.errors import ApiError


def json_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json
    except Exception:  # Sanic raises on malformed JSON; we answer with our error shape
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body
