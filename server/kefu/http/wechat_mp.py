"""WeChat's customer-service channel over HTTP (docs/protocol.md §12, docs/wechat-channel.md).

`/wechat/mp` is the mini-program's message-push URL: GET is the console's URL check, POST a push
(JSON or XML, plain or safe mode), admitted by the same rules as the Official Account's callback
(http/wechat_guard.py) with `KEFU_MP_TOKEN` / `KEFU_MP_AES_KEY`, and answered `success` as soon as
it is deduplicated (and, for text, stored). `/api/me/subscribe` is where the mini-program tells
kefu the user allowed the "reply received" subscribe message; `/api/wechat/reach/{openid}` tells
an agent how the user can be reached now.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, json, text
from sanic.response import HTTPResponse

from kefu.auth import identity
from kefu.context import ctx
from kefu.errors import BadRequest, Forbidden, Unavailable
from kefu.http.body import json_body
from kefu.protocol import is_openid
from kefu.wechat.mp_push import open_envelope, parse_push

log = logging.getLogger(__name__)
mp_bp = Blueprint("wechat_mp")
PUSH_DEDUPE_TTL = 300  # WeChat retries within ~15 s (wechat.md §4)



@mp_bp.get("/wechat/mp")
async def verify_url(request: Request) -> HTTPResponse:
    return await ctx(request).mp_gate.verify_url(request)


@mp_bp.post("/wechat/mp")
async def receive(request: Request) -> HTTPResponse:
    gate = ctx(request).mp_gate
    push = await gate.open(request, open_envelope, parse_push)
    marks = gate.marks
    try:
        first = await marks.first_seen(push.dedupe_key, PUSH_DEDUPE_TTL)
    except Exception as e:  # the dedupe store is down: fail, so WeChat tries again
        raise Unavailable("try again") from e
    await ctx(request).cs.receive(push, first)
    return text("success")


@mp_bp.get("/api/me/subscribe")
async def my_subscribe(request: Request) -> HTTPResponse:
    """Which template the mini-program should ask for, and how many sends the user allowed."""
    who = await identity(request)
    if who.role != "user":
        raise Forbidden("only a mini-program user has subscribe consents")
    channel = ctx(request).cs
    assert who.openid is not None
    consents = await channel.store.consents(who.openid, channel.template_id) if channel.template_id else 0
    return json({"template_id": channel.template_id or None, "page": channel.template_page,
                 "consents": consents})


@mp_bp.post("/api/me/subscribe")
async def record_subscribe(request: Request) -> HTTPResponse:
    """`wx.requestSubscribeMessage` said `accept` for the template: one more send allowed."""
    who = await identity(request)
    if who.role != "user":
        raise Forbidden("only a mini-program user has subscribe consents")
    body = json_body(request)
    channel = ctx(request).cs
    if body.get("template_id") != channel.template_id or not channel.template_id:
        raise BadRequest("template_id must be the configured template (GET /api/me/subscribe)")
    if body.get("result") not in ("accept", "reject", "ban"):
        raise BadRequest('result must be "accept", "reject" or "ban" (what WeChat answered)')
    assert who.openid is not None
    if body["result"] == "accept":
        consents = await channel.store.grant(who.openid, channel.template_id)
    else:
        consents = await channel.store.consents(who.openid, channel.template_id)
    await channel.announce(who.openid)
    return json({"template_id": channel.template_id, "consents": consents})


@mp_bp.get("/api/wechat/reach/<openid:str>")
async def reach(request: Request, openid: str) -> HTTPResponse:
    who = await identity(request)
    if who.role != "agent":
        raise Forbidden("only agents see how a user can be reached")
    if not is_openid(openid):
        raise BadRequest("bad openid")
    return json({"openid": openid, **await ctx(request).cs.reach(openid)})
