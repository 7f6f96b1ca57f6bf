"""`/api/*`: logins, identity, conversations, history and read marks."""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from kefu.auth import request_token
from kefu.errors import BadRequest, Forbidden, Unauthorized, Unavailable, UpstreamRefused
from kefu.http.body import int_arg, json_body, str_field
from kefu.node import Node
from kefu.protocol import Identity, is_id, is_openid
from kefu.wechat.errors import WeChatError, WeChatUnavailable

log = logging.getLogger(__name__)
api = Blueprint("api", url_prefix="/api")


def _node(request: Request) -> Node:
    node: Node = request.app.ctx.node
    return node


async def _who(request: Request) -> tuple[str, Identity]:
    token = request_token(request)
    if not token:
        raise Unauthorized("token required")
    who = await _node(request).tokens.resolve(token)
    if who is None:
        raise Unauthorized("invalid token")
    return token, who


def _may_see(who: Identity, openid: str) -> None:
    if not is_openid(openid):
        raise BadRequest("bad openid")
    if who.role == "user" and who.openid != openid:
        raise Forbidden("a user can only see their own conversation")


@api.post("/login")
async def user_login(request: Request) -> HTTPResponse:
    code = str_field(json_body(request), "code")
    node = _node(request)
    try:
        session = await request.app.ctx.wechat.code2session(code)
    except WeChatError as e:
        raise UpstreamRefused(f"WeChat refused the code: errcode {e.errcode}") from e
    except WeChatUnavailable as e:
        raise Unavailable("WeChat is unavailable, retry later") from e
    ttl = request.app.ctx.settings.user_token_ttl
    await node.accounts.touch_user(session.openid, session.unionid)
    token = await node.tokens.issue(Identity(role="user", openid=session.openid), ttl)
    return json({"token": token, "openid": session.openid, "expires_in": ttl})


@api.post("/agent/login")
async def agent_login(request: Request) -> HTTPResponse:
    body = json_body(request)
    name, password = str_field(body, "name", 64), str_field(body, "password", 1024)
    node = _node(request)
    who = await node.accounts.authenticate(name, password)
    if who is None:
        raise Unauthorized("wrong name or password")
    ttl = request.app.ctx.settings.agent_token_ttl
    token = await node.tokens.issue(who, ttl)
    return json({"token": token, "agent": {"id": who.agent_id, "name": who.agent_name}, "expires_in": ttl})


@api.post("/logout")
async def logout(request: Request) -> HTTPResponse:
    token, who = await _who(request)
    await _node(request).logout(token, who)
    return json({"ok": True})


@api.get("/me")
async def me(request: Request) -> HTTPResponse:
    _, who = await _who(request)
    if who.role == "agent":
        return json({"role": "agent", "agent": {"id": who.agent_id, "name": who.agent_name}})
    assert who.openid is not None
    state = await _node(request).read_state(who.openid)
    return json({"role": "user", "openid": who.openid, **state})


@api.get("/conversations")
async def conversations(request: Request) -> HTTPResponse:
    _, who = await _who(request)
    if who.role != "agent":
        raise Forbidden("only agents can list conversations")
    limit = int_arg(request, "limit", 50, 1, 200)
    before = int_arg(request, "before", None, 1)
    assert limit is not None
    rows = await _node(request).messages.conversations(before, limit)
    nxt = rows[-1]["last_message"]["id"] if len(rows) == limit else None
    return json({"conversations": rows, "next_before": nxt})


@api.get("/conversations/<openid:str>/messages")
async def history(request: Request, openid: str) -> HTTPResponse:
    _, who = await _who(request)
    _may_see(who, openid)
    limit = int_arg(request, "limit", 50, 1, 200)
    before = int_arg(request, "before", None, 1)
    assert limit is not None
    page = await _node(request).history(openid, before, limit)
    nxt = page[-1].id if len(page) == limit else None
    return json({"messages": [m.to_wire() for m in page], "next_before": nxt})


@api.post("/conversations/<openid:str>/read")
async def mark_read(request: Request, openid: str) -> HTTPResponse:
    _, who = await _who(request)
    _may_see(who, openid)
    upto = json_body(request, optional=True).get("upto")
    if upto is not None and not is_id(upto):
        raise BadRequest("upto must be an integer in 0..2^63-1")
    upto = await _node(request).mark_read(who, openid, upto)
    return json({"openid": openid, "by": who.role, "upto": upto})
