"""`/wechat/callback`: the Official Account's server URL (wechat.md §4).

GET is the console's URL check (echo `echostr`); POST carries event XML, plain or in safe mode
(`encrypt_type=aes`). A request is admitted only when it is WeChat's and new (http/wechat_guard.py:
`KEFU_OA_TOKEN` signs it, its timestamp is fresh, with `KEFU_OA_AES_KEY` it is encrypted, and its
timestamp + nonce came with no other body).

The handler then parses, dedupes and answers `success` at once; the login and the push run in a
background task (`QrLogin.accept`), because WeChat gives up after 5 s and then re-sends.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, text
from sanic.response import HTTPResponse

from kefu.context import ctx
from kefu.errors import Unavailable
from kefu.http.wechat_guard import (
    CallbacksOff,
    PlainCallbackRefused,
    ReplayedCallback,
    StaleCallback,
)
from kefu.wechat.callback import parse_event
from kefu.wechat.crypto import WeChatCrypto

__all__ = ["CallbacksOff", "PlainCallbackRefused", "ReplayedCallback", "StaleCallback", "wechat_bp"]
log = logging.getLogger(__name__)
wechat_bp = Blueprint("wechat_callback")


def _decrypt(body: bytes, crypto: WeChatCrypto, msg_signature: str | None, timestamp: str | None,
             nonce: str | None) -> bytes:
    return crypto.decrypt_message(body, msg_signature, timestamp, nonce)


@wechat_bp.get("/wechat/callback")
async def verify_url(request: Request) -> HTTPResponse:
    return await ctx(request).callback_gate.verify_url(request)


@wechat_bp.post("/wechat/callback")
async def receive(request: Request) -> HTTPResponse:
    event = await ctx(request).callback_gate.open(request, _decrypt, parse_event)
    qr = ctx(request).qr
    try:
        await qr.accept(event)
    except Exception as e:  # the dedupe store is down: fail, so WeChat tries again
        log.warning("callback not accepted: %s", e)
        raise Unavailable("try again") from e
    return text("success")
