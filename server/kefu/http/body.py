"""Request bodies and query arguments: every JSON endpoint takes one JSON object (read by the one
JSON reader), and says what is wrong with a 400 otherwise."""

from __future__ import annotations

from typing import Any

from sanic import Request

from kefu.errors import BadJson, BadRequest
from kefu.jsonio import load_object
from kefu.protocol import MAX_ID


def json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; with `optional`, an empty body is `{}`."""
    if optional and not request.body:
        return {}
    try:
        return load_object(request.body)
    except BadJson as e:
        raise BadRequest(f"body must be a JSON object ({e.message})") from None


def str_field(body: dict[str, Any], name: str, max_len: int = 256) -> str:
    v = body.get(name)
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise BadRequest(f"{name} must be a non-empty string of at most {max_len} characters")
    return v


def int_arg(request: Request, name: str, default: int | None, lo: int = 0, hi: int = MAX_ID) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise BadRequest(f"{name} must be an integer in {lo}..{hi}")
    v = int(raw)
    if not lo <= v <= hi:
        raise BadRequest(f"{name} must be an integer in {lo}..{hi}")
    return v
