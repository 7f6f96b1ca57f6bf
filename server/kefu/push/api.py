"""`POST /api/push`: backends push a JSON object to a page (uid, task id, group, all pages) or a
user (openid), and use the rest of the push vocabulary (`"kefu": "join" | "leave" | "online" |
"count"`, push/commands.py) — the same objects the TCP port takes, answered in JSON."""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from kefu.auth import check_api_key
from kefu.context import ctx
from kefu.http.body import json_body
from kefu.push.commands import parse_command

log = logging.getLogger(__name__)
push_api = Blueprint("push_api")


@push_api.post("/api/push")
async def push(request: Request) -> HTTPResponse:
    check_api_key(request, "push API")
    cmd = parse_command(json_body(request), ticket_required=False)
    pushes = ctx(request).pushes
    return json((await pushes.run(cmd)).body)
