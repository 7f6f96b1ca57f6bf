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
from kefu.errors import BadRequest, Forbidden, Unavailable
from kefu.http.wechat_guard import (
    CallbacksOff,
    PlainCallbackRefused,
    ReplayedCallback,
    StaleCallback,
    check_encrypted,
    check_signed,
    first_use,
)
from kefu.qr.login import QrLogin
from kefu.wechat.callback import parse_event
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import CallbackError, InvalidSignatureError

__all__ = ["CallbacksOff", "PlainCallbackRefused", "ReplayedCallback", "StaleCallback", "wechat_bp"]
log = logging.getLogger(__name__)
wechat_bp = Blueprint("wechat_callback")


def _signed(request: Request) -> None:
    check_signed(request.args, ctx(request).callback_token, ctx(request).settings.callback_window,
                 "KEFU_OA_TOKEN")


async def _first_use(request: Request, what: bytes) -> None:
    qr: QrLogin = ctx(request).qr
    await first_use(qr.store, request.args, what, ctx(request).settings.callback_window)


@wechat_bp.get("/wechat/callback")
async def verify_url(request: Request) -> HTTPResponse:
    _signed(request)
    echostr = request.args.get("echostr")
    if echostr is None:
        raise BadRequest("echostr missing")
    await _first_use(request, b"GET\n" + echostr.encode("utf-8", "surrogatepass"))
    return text(echostr)


@wechat_bp.post("/wechat/callback")
async def receive(request: Request) -> HTTPResponse:
    _signed(request)
    a = request.args
    crypto: WeChatCrypto | None = ctx(request).callback_crypto
    encrypted = check_encrypted(a, crypto is not None, ctx(request).settings.oa_allow_plain,
                                "KEFU_OA_AES_KEY")
    try:
        if encrypted:
            assert crypto is not None
            xml = crypto.decrypt_message(request.body, a.get("msg_signature"), a.get("timestamp"),
                                         a.get("nonce"))
        else:
            xml = request.body
        event = parse_event(xml)
    except InvalidSignatureError as e:
        log.warning("callback with a bad msg_signature refused: %s", e)
        raise Forbidden("invalid msg_signature") from None
    except CallbackError as e:
        log.warning("malformed callback: %s", e)
        raise BadRequest(str(e)) from None
    await _first_use(request, b"POST\n" + request.body)
    qr: QrLogin = ctx(request).qr
    try:
        await qr.accept(event)
    except Exception as e:  # the dedupe store is down: fail, so WeChat tries again
        log.warning("callback not accepted: %s", e)
        raise Unavailable("try again") from e
    return text("success")
