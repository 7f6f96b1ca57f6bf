"""Finding the token on a request: `?token=` (mini-programs cannot set headers) or a Bearer header."""

from __future__ import annotations

from sanic import Request


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.args.get("token") or None
