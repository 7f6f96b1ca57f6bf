"""`/api/*`: logins, identity, conversations, history and read marks."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from kefu.auth import authenticated
from kefu.context import ctx
from kefu.errors import BadRequest, Forbidden, RateLimited, Unauthorized, Unavailable, UpstreamRefused
from kefu.http.body import int_arg, json_body, str_field
from kefu.protocol import Identity, is_id, is_openid
from kefu.wechat.errors import WeChatError, WeChatUnavailable

log = logging.getLogger(__name__)
api = Blueprint("api", url_prefix="/api")



class AgentDisabled(Forbidden):
    code = "agent_disabled"


async def _who(request: Request) -> tuple[str, Identity]:
    return await authenticated(request)


def _may_see(who: Identity, openid: str) -> None:
    if not is_openid(openid):
        raise BadRequest("bad openid")
    if who.role == "user" and who.openid != openid:
        raise Forbidden("a user can only see their own conversation")


@api.post("/login")
async def user_login(request: Request) -> HTTPResponse:
    code = str_field(json_body(request), "code")
    node = ctx(request).node
    try:
        session = await ctx(request).wechat.code2session(code)
    except WeChatError as e:
        raise UpstreamRefused(f"WeChat refused the code: errcode {e.errcode}") from e
    except WeChatUnavailable as e:
        raise Unavailable("WeChat is unavailable, retry later") from e
    ttl = ctx(request).settings.user_token_ttl
    token = await node.login_user(session.openid, session.unionid, ttl)
    return json({"token": token, "openid": session.openid, "expires_in": ttl})


@api.post("/agent/login")
async def agent_login(request: Request) -> HTTPResponse:
    """Throttled per client IP and per name (docs/security.md); the password is checked in a
    worker thread. 401 for a wrong name or password alike; 403 only with the right password."""
    body = json_body(request)
    name, password = str_field(body, "name", 64), str_field(body, "password", 1024)
    node = ctx(request).node
    throttle, ip = ctx(request).login_throttle, request.client_ip
    wait = await throttle.attempt(ip, name)  # a store that is down answers 503 at the edge
    if wait > 0:
        log.debug("agent login throttled (name %s, ip %s): retry in %.1f s", _tag(name), ip, wait)
        raise RateLimited("too many failed logins; wait before trying again", retry_after=wait)
    try:
        account = await node.accounts.authenticate(name, password)
    except BaseException:
        with contextlib.suppress(Exception):
            await throttle.refund(ip, name)
        raise
    if account is None:
        log.info("agent login failed (name %s, ip %s)", _tag(name), ip)
        raise Unauthorized("wrong name or password")
    if account.disabled:  # the right password, so say why; it is not counted as a failure
        await throttle.refund(ip, name)
        raise AgentDisabled("this agent account is disabled")
    await throttle.succeeded(ip, name)
    ttl = ctx(request).settings.agent_token_ttl
    who = account.identity
    token = await node.tokens.issue(who, ttl)
    if not await node.accounts.still_valid(account):  # raced a password change or a disable
        await node.tokens.revoke(token)
        raise Unauthorized("wrong name or password")
    return json({"token": token, "agent": _agent_json(who), "expires_in": ttl})


def _tag(name: str) -> str:
    """How a login name appears in the log: a short digest, since people type passwords into the
    name field; an operator can compute it for a name they suspect (docs/security.md)."""
    return "#" + hashlib.sha256(name.encode()).hexdigest()[:10]


def _agent_json(who: Identity) -> dict[str, Any]:
    return {"id": who.agent_id, "name": who.agent_name, "admin": who.admin}


@api.post("/logout")
async def logout(request: Request) -> HTTPResponse:
    token, who = await _who(request)
    await ctx(request).node.logout(token, who)
    return json({"ok": True})


@api.get("/me")
async def me(request: Request) -> HTTPResponse:
    _, who = await _who(request)
    if who.role == "agent":
        return json({"role": "agent", "agent": _agent_json(who)})
    assert who.openid is not None
    state = await ctx(request).node.read_state(who.openid)
    return json({"role": "user", "openid": who.openid, **state})


@api.get("/conversations")
async def conversations(request: Request) -> HTTPResponse:
    _, who = await _who(request)
    if who.role != "agent":
        raise Forbidden("only agents can list conversations")
    limit = int_arg(request, "limit", 50, 1, 200)
    before = int_arg(request, "before", None, 1)
    assert limit is not None
    rows = await ctx(request).node.conversations(before, limit)
    nxt = rows[-1]["last_message"]["id"] if len(rows) == limit else None
    return json({"conversations": rows, "next_before": nxt})


@api.get("/conversations/<openid:str>/messages")
async def history(request: Request, openid: str) -> HTTPResponse:
    _, who = await _who(request)
    _may_see(who, openid)
    limit = int_arg(request, "limit", 50, 1, 200)
    before = int_arg(request, "before", None, 1)
    assert limit is not None
    everything = request.args.get("kinds") == "all"  # notes and status events too (agents only)
    page = await ctx(request).node.history(who, openid, before, limit, everything)
    nxt = page[-1].id if len(page) == limit else None
    return json({"messages": [m.to_wire() for m in page], "next_before": nxt})


@api.post("/conversations/<openid:str>/read")
async def mark_read(request: Request, openid: str) -> HTTPResponse:
    _, who = await _who(request)
    _may_see(who, openid)
    upto = json_body(request, optional=True).get("upto")
    if upto is not None and not is_id(upto):
        raise BadRequest("upto must be an integer in 0..2^63-1")
    upto = await ctx(request).node.mark_read(who, openid, upto)
    return json({"openid": openid, "by": who.role, "upto": upto})
