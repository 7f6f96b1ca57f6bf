"""`/wechat/callback`: the Official Account's server URL (wechat.md §4).

GET is the console's URL check (echo `echostr`); POST carries event XML, plain or in safe mode
(`encrypt_type=aes`). Every request must carry a valid `signature` (else 403, nothing happens).
The handler verifies, parses, dedupes and answers `success` at once; the login and the push run in
a background task (`QrLogin.accept`), because WeChat gives up after 5 s and then re-sends.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, text
from sanic.response import HTTPResponse

from kefu.errors import BadRequest, Forbidden, Unavailable
from kefu.qr.login import QrLogin
from kefu.wechat.callback import check_signature, parse_event
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import CallbackError, InvalidSignatureError

log = logging.getLogger(__name__)
wechat_bp = Blueprint("wechat_callback")


def _verified(request: Request) -> None:
    token: str = request.app.ctx.callback_token
    if not token:
        raise Unavailable("WeChat callbacks are off: set KEFU_OA_TOKEN")
    a = request.args
    if not check_signature(token, a.get("signature"), a.get("timestamp"), a.get("nonce")):
        log.warning("callback with a bad signature refused")
        raise Forbidden("invalid signature")


@wechat_bp.get("/wechat/callback")
async def verify_url(request: Request) -> HTTPResponse:
    _verified(request)
    echostr = request.args.get("echostr")
    if echostr is None:
        raise BadRequest("echostr missing")
    return text(echostr)


@wechat_bp.post("/wechat/callback")
async def receive(request: Request) -> HTTPResponse:
    _verified(request)
    a = request.args
    crypto: WeChatCrypto | None = request.app.ctx.callback_crypto
    try:
        if a.get("encrypt_type") == "aes":
            if crypto is None:
                raise BadRequest("safe mode needs KEFU_OA_AES_KEY")
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
    qr: QrLogin = request.app.ctx.qr
    await qr.accept(event)  # the dedupe store down: 503, so WeChat tries again
    return text("success")
