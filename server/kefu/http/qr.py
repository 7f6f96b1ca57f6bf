"""QR login over HTTP: `GET /qrcode`, and in sandbox mode the QR image and the simulated scan.

`/qr-image/<ticket>` and `POST /dev/simulate-scan` exist only with the dev sandbox; in real mode
they are not routed at all (404), and the page shows WeChat's own image (`showqrcode`).

`GET /qrcode` is limited per client address (store/qr_quota.py: `KEFU_QRCODE_PER_MINUTE`,
`KEFU_QRCODE_LIVE_PER_IP`); over the limit it answers 429 with Retry-After and asks WeChat nothing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
from urllib.parse import unquote

import segno
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse, raw

from kefu.context import ctx
from kefu.core.admission import address_key
from kefu.core.push import MAX_TICKET
from kefu.errors import BadRequest, NotFound, RateLimited, Unavailable, UpstreamRefused
from kefu.http.body import json_body
from kefu.protocol import is_openid, is_uid
from kefu.qr.login import NewQr, QrLogin, QrUnavailable
from kefu.qr.store import StoreFull
from kefu.wechat.callback import build_scan_xml, parse_event
from kefu.wechat.errors import WeChatError, WeChatUnavailable
from kefu.wechat.sandbox import SandboxWeChat

log = logging.getLogger(__name__)
SANDBOX_SCANNER = "sbxoa_dev"  # the OA openid a simulated scan logs in as, unless the body names one

qr_bp = Blueprint("qr")
sandbox_bp = Blueprint("qr_sandbox")


@qr_bp.get("/qrcode")
async def qrcode(request: Request) -> HTTPResponse:
    qr = ctx(request).qr
    quota = ctx(request).qr_quota
    address, count = address_key(request.client_ip), secrets.token_hex(8)
    wait = await quota.take(address, count)
    if wait > 0:
        raise RateLimited("too many QR codes from your address; retry later", retry_after=wait)
    try:
        new = await _create(qr)
    except BaseException:
        with contextlib.suppress(Exception):
            await quota.give_back(address, count)  # no code was made: it does not count
        raise
    body = new.to_json(sandbox=isinstance(qr.oa, SandboxWeChat))
    return json(body, headers={"Cache-Control": "no-store"})


async def _create(qr: QrLogin) -> NewQr:
    try:
        return await qr.create()
    except QrUnavailable as e:
        raise Unavailable(str(e)) from None
    except WeChatError as e:
        log.warning("qrcode/create refused: %s", e)
        raise UpstreamRefused(f"WeChat refused to create the QR code: errcode {e.errcode}") from None
    except WeChatUnavailable as e:
        log.warning("qrcode/create failed: %s", e)
        raise Unavailable("WeChat is unavailable, retry later") from None
    except StoreFull as e:
        raise Unavailable(f"too many QR codes are waiting ({e}); retry later") from None


def _sandbox(request: Request) -> SandboxWeChat:
    """These routes exist only in sandbox mode, where the Official Account is the sandbox."""
    oa = ctx(request).qr.oa
    assert isinstance(oa, SandboxWeChat)
    return oa


@sandbox_bp.get("/qr-image/<ticket:path>")
async def qr_image(request: Request, ticket: str) -> HTTPResponse:
    """DEV ONLY: an SVG QR code of a sandbox ticket. Not checked against the sandbox's tickets:
    with several workers the code may have been made by another worker (the page shows expiry)."""
    ticket = unquote(ticket)
    if not 1 <= len(ticket) <= MAX_TICKET:
        raise NotFound("not a ticket")
    buf = io.BytesIO()
    segno.make(ticket, error="m").save(buf, kind="svg", scale=6, border=2, xmldecl=False,
                                       dark="#000", light="#fff")
    return raw(buf.getvalue(), content_type="image/svg+xml",
               headers={"Cache-Control": "private, max-age=60"})


@sandbox_bp.post("/dev/simulate-scan")
async def simulate_scan(request: Request) -> HTTPResponse:
    """DEV ONLY: what WeChat would push when someone scans `ticket`, through the callback's path.

    Body: `{"ticket", "uid"?, "openid"?: OA openid (default "sbxoa_dev"), "subscribe"?: bool}`."""
    body = json_body(request)
    if not isinstance(body.get("ticket"), str):
        raise BadRequest('body must be {"ticket": "...", "openid"?: "...", "subscribe"?: bool}')
    openid = body.get("openid", SANDBOX_SCANNER)
    if not is_openid(openid):
        raise BadRequest("openid must be 1-64 characters of A-Za-z0-9_-")
    qr = ctx(request).qr
    sandbox, ticket, subscribe = _sandbox(request), body["ticket"], body.get("subscribe") is True
    uid = body.get("uid")
    if sandbox.scene_for(ticket) is not None:
        event = sandbox.simulate_scan(ticket, openid, subscribe=subscribe)
    elif is_uid(uid) and await qr.ticket_ok(uid, ticket):
        # Made by another worker's sandbox (KEFU_WORKERS > 1); the shared store knows it.
        event = parse_event(build_scan_xml(to_user=sandbox.oa_id, from_user=openid, scene=uid,
                                           ticket=ticket, subscribe=subscribe))
    else:
        raise NotFound("unknown or expired sandbox ticket")
    accepted = await qr.accept(event)
    return json({"ok": True, "openid": openid, "duplicate": not accepted})
