"""`/wechat/callback`: the Official Account's server URL (wechat.md §4).

GET is the console's URL check (echo `echostr`); POST carries event XML, plain or in safe mode
(`encrypt_type=aes`). A request is admitted only when it is WeChat's and new:

1. its `signature` matches `KEFU_OA_TOKEN` (403 `forbidden`);
2. its `timestamp` is within `KEFU_CALLBACK_WINDOW` seconds of now, either way (403
   `stale_timestamp`) — the signature covers the timestamp, so an old signed query stays old;
3. with `KEFU_OA_AES_KEY` set, the body is encrypted and `msg_signature` covers it (403
   `encryption_required` for a plain body, unless `KEFU_OA_ALLOW_PLAIN`): the plain signature
   covers only timestamp and nonce, never the body;
4. its `timestamp` + `nonce` were not used before for another body (403 `replayed_nonce`; shared
   through Redis when configured). The same body again is WeChat re-sending it: admitted, and the
   event dedupe acts on it once.

The handler then parses, dedupes and answers `success` at once; the login and the push run in a
background task (`QrLogin.accept`), because WeChat gives up after 5 s and then re-sends.
"""

from __future__ import annotations

import hashlib
import logging
import time

from sanic import Blueprint, Request, text
from sanic.response import HTTPResponse

from kefu.errors import BadRequest, Forbidden, KefuError, Unavailable
from kefu.qr.login import QrLogin
from kefu.wechat.callback import check_signature, is_fresh, nonce_ok, parse_event
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import CallbackError, InvalidSignatureError

log = logging.getLogger(__name__)
wechat_bp = Blueprint("wechat_callback")


class CallbacksOff(KefuError):
    code, status = "unavailable", 503


class StaleCallback(Forbidden):
    """The timestamp is outside the freshness window: an old (perhaps logged) signed query."""

    code = "stale_timestamp"


class ReplayedCallback(Forbidden):
    """This timestamp + nonce already came with another body: someone reuses WeChat's query."""

    code = "replayed_nonce"


class PlainCallbackRefused(Forbidden):
    """A plain body while an AES key is configured: nothing would prove the body is WeChat's."""

    code = "encryption_required"


def _signed(request: Request) -> None:
    """Steps 1 and 2: WeChat's signature, on a fresh timestamp."""
    token: str = request.app.ctx.callback_token
    if not token:
        raise CallbacksOff("WeChat callbacks are off: set KEFU_OA_TOKEN")
    a = request.args
    if not check_signature(token, a.get("signature"), a.get("timestamp"), a.get("nonce")):
        log.warning("callback with a bad signature refused")
        raise Forbidden("invalid signature")
    window = request.app.ctx.settings.callback_window
    if not is_fresh(a.get("timestamp"), time.time(), window):
        log.warning("callback with a stale timestamp refused (window %ss)", window)
        raise StaleCallback(f"timestamp is more than {window} s away from the server's clock")
    if not nonce_ok(a.get("nonce")):
        raise BadRequest("nonce must be 1-128 printable ASCII characters")


async def _first_use(request: Request, what: bytes) -> None:
    """Step 4: refuse this signed query if it already came with something else."""
    a = request.args
    window = request.app.ctx.settings.callback_window
    qr: QrLogin = request.app.ctx.qr
    fingerprint = hashlib.sha256(what).hexdigest()
    try:
        # A query is fresh up to `window` after its timestamp, which may be `window` ahead of now.
        first = await qr.store.claim_nonce(a["timestamp"], a["nonce"], fingerprint, 2 * window + 1)
    except Exception as e:  # the store is down: fail, so WeChat tries again
        log.warning("callback nonce check failed: %s", e)
        raise Unavailable("try again") from e
    if not first:
        log.warning("callback replaying an earlier timestamp + nonce with another body refused")
        raise ReplayedCallback("this timestamp and nonce were already used")


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
    crypto: WeChatCrypto | None = request.app.ctx.callback_crypto
    encrypted = a.get("encrypt_type") == "aes"
    if crypto is not None and not encrypted and not request.app.ctx.settings.oa_allow_plain:
        log.warning("plain callback refused: KEFU_OA_AES_KEY is set (KEFU_OA_ALLOW_PLAIN is off)")
        raise PlainCallbackRefused("KEFU_OA_AES_KEY is set: only encrypted (safe mode) callbacks "
                                   "are accepted")
    try:
        if encrypted:
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
    await _first_use(request, b"POST\n" + request.body)
    qr: QrLogin = request.app.ctx.qr
    try:
        await qr.accept(event)
    except Exception as e:  # the dedupe store is down: fail, so WeChat tries again
        log.warning("callback not accepted: %s", e)
        raise Unavailable("try again") from e
    return text("success")
