"""`POST /api/push`: backends push a JSON object to a QR page (uid), a user (openid) or all pages."""

from __future__ import annotations

import hmac
import logging

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from kefu.core.push import parse_push
from kefu.errors import Unauthorized, Unavailable
from kefu.http.body import json_body
from kefu.node import Node

log = logging.getLogger(__name__)
push_api = Blueprint("push_api")


def check_api_key(request: Request) -> None:
    expected: str = request.app.ctx.settings.api_key
    if not expected:
        raise Unavailable("push API disabled: set KEFU_API_KEY")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong X-Api-Key")


@push_api.post("/api/push")
async def push(request: Request) -> HTTPResponse:
    check_api_key(request)
    target = parse_push(json_body(request), ticket_required=False)
    node: Node = request.app.ctx.node
    nodes = await node.push(target.channel, target.frame)
    return json({"delivered": nodes > 0, "nodes": nodes})
