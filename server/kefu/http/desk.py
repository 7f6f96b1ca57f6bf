"""The team console's HTTP side (docs/protocol.md §10): views of the conversation list, the team,
customer profiles (set by a backend with the API key, or by the user: nickname and avatar), and
canned replies (admins manage them)."""

from __future__ import annotations

import re
from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse, raw

from kefu.auth import check_api_key, identity
from kefu.context import ctx
from kefu.core.routing import DESK, desk_envelope
from kefu.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from kefu.http.body import int_arg, json_body
from kefu.jsonio import dumps
from kefu.protocol import Identity, is_openid
from kefu.store.canned import CannedStore, ShortcutTaken
from kefu.store.desk import VIEWS, display_profile
from kefu.store.profiles import ProfileStore

desk_api = Blueprint("desk", url_prefix="/api")
URL_RE = re.compile(r"(https?://[^\s]{1,500}|/api/avatars/[A-Za-z0-9_-]{1,64}(\?v=\d{1,20})?)")
IMAGE_MAGIC = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8", "image/gif": b"GIF8",
               "image/webp": b"RIFF"}



def _profiles(request: Request) -> ProfileStore:
    return ProfileStore(ctx(request).node.messages.engine)


def _canned(request: Request) -> CannedStore:
    return CannedStore(ctx(request).node.messages.engine)


def _openid(openid: str) -> str:
    if not is_openid(openid):
        raise BadRequest("bad openid")
    return openid


# ---- the conversation list and the team ---------------------------------------------------------

@desk_api.get("/desk/conversations")
async def conversations(request: Request) -> HTTPResponse:
    who = await identity(request, "agent")
    view = request.args.get("view", "mine")
    if view not in VIEWS:
        raise BadRequest(f"view must be one of {', '.join(VIEWS)}")
    if view == "all" and not who.admin:
        raise Forbidden("only admins see every conversation")
    limit = int_arg(request, "limit", 50, 1, 200)
    before = int_arg(request, "before", None, 1)
    assert limit is not None
    store = ctx(request).node.desk.store
    rows = await store.list(view, who.agent_id, before, limit)
    nxt = rows[-1]["last_message"]["id"] if len(rows) == limit else None
    return json({"view": view, "conversations": rows, "next_before": nxt,
                 "counts": await store.counts(who.agent_id)})


@desk_api.get("/desk/counts")
async def counts(request: Request) -> HTTPResponse:
    who = await identity(request, "agent")
    return json({"counts": await ctx(request).node.desk.store.counts(who.agent_id)})


@desk_api.get("/desk/agents")
async def agents(request: Request) -> HTTPResponse:
    await identity(request, "agent")
    return json({"agents": await ctx(request).node.desk.roster()})


@desk_api.get("/customers/<openid:str>")
async def customer(request: Request, openid: str) -> HTTPResponse:
    """The side panel: profile, status and holder, and the conversation's earlier episodes."""
    await identity(request, "agent")
    openid = _openid(openid)
    node = ctx(request).node
    st = await node.desk.store.state(openid)
    return json({"profile": await _profiles(request).get(openid), "status": st.status,
                 "assignee_id": st.assignee_id, "events": await node.desk.store.events(openid)})


# ---- profiles: the backend's (API key) and the user's own -----------------------------------------

def _text(body: dict[str, Any], name: str, max_len: int) -> str | None:
    v = body.get(name)
    if v is not None and (not isinstance(v, str) or len(v) > max_len):
        raise BadRequest(f"{name} must be a string of at most {max_len} characters, or null")
    return v or None


def _url(body: dict[str, Any], name: str) -> str | None:
    v = _text(body, name, 512)
    if v is not None and not URL_RE.fullmatch(v):
        raise BadRequest(f"{name} must be an http(s) URL")
    return v


def backend_fields(body: dict[str, Any]) -> dict[str, Any]:
    allowed = {"name", "avatar", "phone", "tags", "attrs"}
    unknown = set(body) - allowed
    if unknown or not body:
        raise BadRequest(f"body may have {', '.join(sorted(allowed))} (at least one)")
    out: dict[str, Any] = {}
    if "name" in body:
        out["name"] = _text(body, "name", 64)
    if "avatar" in body:
        out["avatar"] = _url(body, "avatar")
    if "phone" in body:
        out["phone"] = _text(body, "phone", 32)
    if "tags" in body:
        tags = body["tags"]
        if tags is not None and (not isinstance(tags, list) or len(tags) > 20 or not all(
                isinstance(t, str) and 0 < len(t) <= 32 for t in tags)):
            raise BadRequest("tags must be a list of at most 20 strings of 1-32 characters")
        out["tags"] = tags or None
    if "attrs" in body:
        attrs = body["attrs"]
        plain = isinstance(attrs, dict) and all(isinstance(v, str | int | float) for v in attrs.values())
        if attrs is not None and (not plain or len(attrs) > 50 or len(dumps(attrs)) > 8192):
            raise BadRequest("attrs must be an object of at most 50 plain values (8 KiB)")
        out["attrs"] = attrs or None
    return out


async def _announce_profile(request: Request, profile: dict[str, Any]) -> None:
    shown = display_profile(profile["name"], profile["avatar"], profile["nickname"], profile["user_avatar"],
                            dumps(profile["tags"]) if profile["tags"] else None)
    frame = {"cmd": "profile", "openid": profile["openid"], "profile": shown}
    await ctx(request).node.broker.publish((DESK,), desk_envelope(frame))


@desk_api.put("/profiles/<openid:str>")
async def put_profile(request: Request, openid: str) -> HTTPResponse:
    check_api_key(request)
    profile = await _profiles(request).update(_openid(openid), backend_fields(json_body(request)))
    await _announce_profile(request, profile)
    return json({"profile": profile})


@desk_api.get("/profiles/<openid:str>")
async def get_profile(request: Request, openid: str) -> HTTPResponse:
    check_api_key(request)
    return json({"profile": await _profiles(request).get(_openid(openid))})


@desk_api.post("/me/profile")
async def set_my_profile(request: Request) -> HTTPResponse:
    """The mini-program user's nickname (from `<input type="nickname">`); the avatar is uploaded
    separately (`POST /api/me/avatar`)."""
    who = await identity(request, "user")
    body = json_body(request)
    if set(body) - {"nickname"} or not body:
        raise BadRequest('body must be {"nickname": "…"}')
    assert who.openid is not None
    profile = await _profiles(request).update(who.openid, {"nickname": _text(body, "nickname", 64)})
    await _announce_profile(request, profile)
    return json({"profile": profile})


@desk_api.post("/me/avatar")
async def set_my_avatar(request: Request) -> HTTPResponse:
    """The avatar the user chose with `<button open-type="chooseAvatar">`, uploaded with
    wx.uploadFile (multipart, field `file`) or as the raw image body."""
    who = await identity(request, "user")
    assert who.openid is not None
    upload = request.files.get("file") if request.files else None
    data = upload.body if upload else (request.body or b"")
    mime = (upload.type if upload else request.headers.get("content-type", "")).split(";")[0].strip()
    sniffed = next((m for m, magic in IMAGE_MAGIC.items() if data.startswith(magic)), None)
    if sniffed is None:
        raise BadRequest("the avatar must be a PNG, JPEG, GIF or WebP image")
    if len(data) > ctx(request).settings.avatar_max_bytes:
        raise TooLarge(f"the avatar is over {ctx(request).settings.avatar_max_bytes} bytes")
    version = await _profiles(request).put_avatar(who.openid, sniffed if mime != sniffed else mime, data)
    url = f"/api/avatars/{who.openid}?v={version}"
    profile = await _profiles(request).update(who.openid, {"user_avatar": url})
    await _announce_profile(request, profile)
    return json({"profile": profile, "avatar": url})


@desk_api.get("/avatars/<openid:str>")
async def avatar(request: Request, openid: str) -> HTTPResponse:
    got = await _profiles(request).avatar(_openid(openid))
    if got is None:
        raise NotFound("no avatar")
    mime, data = got
    return raw(data, content_type=mime, headers={"Cache-Control": "public, max-age=86400",
                                                 "X-Content-Type-Options": "nosniff"})


# ---- canned replies ----------------------------------------------------------------------------

SHORTCUT_RE = re.compile(r"[^\s/]{1,32}")


def _canned_fields(body: dict[str, Any], partial: bool) -> dict[str, str]:
    if set(body) - {"shortcut", "body"} or (not partial and set(body) != {"shortcut", "body"}) or not body:
        raise BadRequest('body must be {"shortcut", "body"}')
    out: dict[str, str] = {}
    if "shortcut" in body:
        v = body["shortcut"]
        if not isinstance(v, str) or not SHORTCUT_RE.fullmatch(v):
            raise BadRequest("shortcut must be 1-32 characters without spaces or /")
        out["shortcut"] = v
    if "body" in body:
        v = body["body"]
        if not isinstance(v, str) or not v.strip() or len(v) > 4000:
            raise BadRequest("body must be a non-empty string of at most 4000 characters")
        out["body"] = v
    return out


async def _admin(request: Request) -> Identity:
    who = await identity(request, "agent")
    if not who.admin:
        raise Forbidden("only admins manage canned replies")
    return who


@desk_api.get("/canned")
async def list_canned(request: Request) -> HTTPResponse:
    await identity(request, "agent")
    return json({"canned": await _canned(request).all()})


@desk_api.post("/admin/canned")
async def create_canned(request: Request) -> HTTPResponse:
    await _admin(request)
    f = _canned_fields(json_body(request), partial=False)
    try:
        reply = await _canned(request).create(f["shortcut"], f["body"])
    except ShortcutTaken:
        raise Conflict(f"the shortcut {f['shortcut']!r} exists") from None
    return json({"canned": reply}, status=201)


@desk_api.patch("/admin/canned/<reply_id:int>")
async def update_canned(request: Request, reply_id: int) -> HTTPResponse:
    await _admin(request)
    try:
        reply = await _canned(request).update(reply_id, _canned_fields(json_body(request), partial=True))
    except ShortcutTaken:
        raise Conflict("that shortcut exists") from None
    if reply is None:
        raise NotFound(f"no canned reply {reply_id}")
    return json({"canned": reply})


@desk_api.delete("/admin/canned/<reply_id:int>")
async def delete_canned(request: Request, reply_id: int) -> HTTPResponse:
    await _admin(request)
    if not await _canned(request).delete(reply_id):
        raise NotFound(f"no canned reply {reply_id}")
    return json({"ok": True})
