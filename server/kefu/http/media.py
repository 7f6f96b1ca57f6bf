"""Pictures over HTTP (docs/protocol.md §11): upload, signed URLs, and the signed URLs themselves.

`POST /api/media` takes the picture (multipart field `file`, as `wx.uploadFile` and a browser's
FormData send it, or the raw body) from a user for their conversation or from an agent for the
one named by `?openid=`. The route streams its body, so the limit is `KEFU_IMAGE_MAX_BYTES` (plus
room for the multipart wrapping) instead of the small request limit every other endpoint keeps; the
token is checked before a byte of it is read.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse, raw

from kefu.auth import identity
from kefu.context import ctx
from kefu.errors import BadRequest, TooLarge
from kefu.http.body import json_body
from kefu.protocol import is_openid

media_api = Blueprint("media")
MULTIPART_ROOM = 64 * 1024  # boundaries, headers and other form fields around the picture
SIGN_MAX = 100



async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    stream: Any = request.stream  # Sanic's Http: an async iterator of body chunks
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload is over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _picture(request: Request, body: bytes) -> bytes:
    """The picture: the multipart field `file` (wx.uploadFile's `name`), else the whole body."""
    if request.content_type.startswith("multipart/form-data"):
        request.body = body
        upload = request.files.get("file") if request.files else None
        if upload is None:
            raise BadRequest("multipart upload without a `file` field")
        return bytes(upload.body)
    return body


@media_api.post("/api/media", stream=True)
async def upload(request: Request) -> HTTPResponse:
    who = await identity(request)
    if who.role == "user":
        assert who.openid is not None
        openid = who.openid
    else:
        openid = request.args.get("openid", "")
        if not is_openid(openid):
            raise BadRequest("agents upload into a conversation: ?openid=<the user's openid>")
    media = ctx(request).media
    body = await _read_body(request, media.limits.max_bytes + MULTIPART_ROOM)
    rec = await media.ingest(_picture(request, body), openid, who.sender)
    return json({"image": rec.meta(), **media.urls(rec)}, status=201)


@media_api.post("/api/media/sign")
async def sign(request: Request) -> HTTPResponse:
    who = await identity(request)
    ids = json_body(request).get("ids")
    if (not isinstance(ids, list) or not 1 <= len(ids) <= SIGN_MAX
            or not all(isinstance(i, str) for i in ids)):
        raise BadRequest(f'body must be {{"ids": [1..{SIGN_MAX} image ids]}}')
    return json({"images": await ctx(request).media.sign(who, ids)})


@media_api.get("/media/<image_id:str>/<variant:str>")
async def serve(request: Request, image_id: str, variant: str) -> HTTPResponse:
    mime, data, left = await ctx(request).media.open(image_id, variant, request.args.get("e"),
                                                  request.args.get("s"))
    return raw(data, content_type=mime, headers={
        "Cache-Control": f"private, max-age={max(0, left)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })
