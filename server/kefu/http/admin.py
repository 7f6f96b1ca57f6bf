"""`/api/admin/*`: agent accounts, for agents whose account is an admin (docs/protocol.md §9).

Every route needs an admin agent's token; the flag is read from the account on each request, so
demoting an admin takes effect at once. An admin cannot disable, demote or delete their own
account (that is how the last admin would lock everyone out); the CLI can do anything.

This blueprint also runs the sweep that closes agent sockets whose token was revoked elsewhere
(`agent_recheck`).
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from kefu.agents import AgentAdmin
from kefu.auth import identity
from kefu.context import ctx
from kefu.errors import BadRequest, Conflict
from kefu.http.body import json_body
from kefu.protocol import Identity

admin_api = Blueprint("admin", url_prefix="/api/admin")


def agent_admin(request: Request) -> AgentAdmin:
    node = ctx(request).node
    return AgentAdmin(node.accounts, node.tokens, node.kick_agent, node.desk.requeue)


async def _with_desk(request: Request, account: dict[str, Any]) -> dict[str, Any]:
    """An Agent with its limit (`max_open`: null = KEFU_ASSIGN_LIMIT) and its load."""
    desk = ctx(request).node.desk
    slots = {a.id: a for a in await desk.store.agents()}
    slot = slots.get(account["id"])
    loads = await desk.store.loads()
    return {**account, "max_open": slot.max_open if slot else None,
            "limit": desk.limit_of(slot) if slot else desk.default_limit, "load": loads.get(account["id"], 0)}


async def _admin(request: Request) -> Identity:
    return await identity(request, admin=True)


def _flag(body: dict[str, Any], name: str) -> bool | None:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise BadRequest(f"{name} must be true or false")
    return v


def _not_self(who: Identity, agent_id: int, what: str) -> None:
    if who.agent_id == agent_id:
        raise Conflict(f"you cannot {what} your own account")


@admin_api.get("/agents")
async def list_agents(request: Request) -> HTTPResponse:
    await _admin(request)
    accounts = await ctx(request).node.accounts.list_agents()
    return json({"agents": [await _with_desk(request, a.to_json()) for a in accounts]})


@admin_api.post("/agents")
async def create_agent(request: Request) -> HTTPResponse:
    await _admin(request)
    body = json_body(request)
    admin = _flag(body, "is_admin") or False
    max_open = _limit(body)
    account = await agent_admin(request).create(body.get("name"), body.get("password"), admin=admin)
    if "max_open" in body:
        await ctx(request).node.desk.store.set_max_open(account.id, max_open)
    return json({"agent": await _with_desk(request, account.to_json())}, status=201)


def _limit(body: dict[str, Any]) -> int | None:
    v = body.get("max_open")
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10_000):
        raise BadRequest("max_open must be an integer in 0..10000, or null (the default limit)")
    return v


@admin_api.get("/agents/<agent_id:int>")
async def get_agent(request: Request, agent_id: int) -> HTTPResponse:
    await _admin(request)
    return json({"agent": await _with_desk(request, (await agent_admin(request).get(agent_id)).to_json())})


@admin_api.patch("/agents/<agent_id:int>")
async def update_agent(request: Request, agent_id: int) -> HTTPResponse:
    who = await _admin(request)
    body = json_body(request)
    unknown = set(body) - {"disabled", "is_admin", "max_open"}
    if unknown or not body:
        raise BadRequest('body must be {"disabled"?: bool, "is_admin"?: bool, "max_open"?: int|null} '
                         '(at least one)')
    disabled, is_admin = _flag(body, "disabled"), _flag(body, "is_admin")
    max_open = _limit(body)
    if disabled:
        _not_self(who, agent_id, "disable")
    if is_admin is False:
        _not_self(who, agent_id, "demote")
    admin = agent_admin(request)
    account = await admin.get(agent_id)
    if is_admin is not None:
        account = await admin.set_admin(agent_id, is_admin)
    if "max_open" in body:
        await ctx(request).node.desk.store.set_max_open(agent_id, max_open)
    if disabled is not None:
        account = await admin.set_disabled(agent_id, disabled)
    return json({"agent": await _with_desk(request, account.to_json())})


@admin_api.post("/agents/<agent_id:int>/password")
async def reset_password(request: Request, agent_id: int) -> HTTPResponse:
    await _admin(request)
    body = json_body(request)
    account = await agent_admin(request).set_password(agent_id, body.get("password"))
    return json({"agent": account.to_json()})


@admin_api.delete("/agents/<agent_id:int>")
async def delete_agent(request: Request, agent_id: int) -> HTTPResponse:
    who = await _admin(request)
    _not_self(who, agent_id, "delete")
    await agent_admin(request).delete(agent_id)
    return json({"ok": True})
