"""What every request WeChat sends to kefu must pass: the Official Account's callback
(`/wechat/callback`) and the mini-program's message push (`/wechat/mp`) alike.

1. its `signature` matches the token configured for that URL (403 `forbidden`);
2. its `timestamp` is within `KEFU_CALLBACK_WINDOW` seconds of now, either way (403
   `stale_timestamp`): the signature covers the timestamp, so an old signed query stays old;
3. its nonce is short printable ASCII (400), so it can be remembered;
4. (after the body is read) its `timestamp` + `nonce` were not used before with another body
   (403 `replayed_nonce`; shared through Redis when configured). The same body again is WeChat
   re-sending it: admitted, and the caller's dedupe acts on it once.
With an AES key configured, a plain body is refused (403 `encryption_required`) unless the
"allow plain" setting says otherwise: the plain signature covers only timestamp and nonce.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sanic import Request, text
from sanic.request import RequestParameters
from sanic.response import HTTPResponse

from kefu.errors import BadRequest, Forbidden, KefuError, Unavailable
from kefu.wechat.callback import check_signature, is_fresh, nonce_ok
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import CallbackError, InvalidSignatureError

T = TypeVar("T")
# Opens a safe-mode body: (body, crypto, msg_signature, timestamp, nonce) → the plaintext.
Unwrap = Callable[[bytes, WeChatCrypto, str | None, str | None, str | None], bytes]

log = logging.getLogger(__name__)


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


class CallbackMarks(Protocol):
    """Remembered signed queries (qr/store.py's stores are these)."""

    async def claim_nonce(self, timestamp: str, nonce: str, body_digest: str, ttl: int) -> bool: ...

    async def first_seen(self, key: str, ttl: int) -> bool: ...


def check_signed(args: RequestParameters, token: str, window: int, token_setting: str) -> None:
    """Steps 1-3: WeChat's signature, on a fresh timestamp, with a nonce kefu can remember."""
    if not token:
        raise CallbacksOff(f"WeChat pushes to this URL are off: set {token_setting}")
    if not check_signature(token, args.get("signature"), args.get("timestamp"), args.get("nonce")):
        log.warning("a WeChat push with a bad signature refused")
        raise Forbidden("invalid signature")
    if not is_fresh(args.get("timestamp"), time.time(), window):
        log.warning("a WeChat push with a stale timestamp refused (window %ss)", window)
        raise StaleCallback(f"timestamp is more than {window} s away from the server's clock")
    if not nonce_ok(args.get("nonce")):
        raise BadRequest("nonce must be 1-128 printable ASCII characters")


def check_encrypted(args: RequestParameters, has_key: bool, allow_plain: bool, key_setting: str) -> bool:
    """Whether the body is in safe mode; a plain one is refused when a key is set (unless allowed)."""
    encrypted = args.get("encrypt_type") == "aes"
    if has_key and not encrypted and not allow_plain:
        log.warning("plain WeChat push refused: %s is set", key_setting)
        raise PlainCallbackRefused(f"{key_setting} is set: only encrypted (safe mode) pushes are accepted")
    if encrypted and not has_key:
        raise BadRequest(f"safe mode needs {key_setting}")
    return encrypted


async def first_use(marks: CallbackMarks, args: RequestParameters, what: bytes, window: int) -> None:
    """Step 4: refuse this signed query if it already came with something else."""
    fingerprint = hashlib.sha256(what).hexdigest()
    try:
        # A query is fresh up to `window` after its timestamp, which may be `window` ahead of now.
        first = await marks.claim_nonce(args["timestamp"], args["nonce"], fingerprint, 2 * window + 1)
    except Exception as e:  # the store is down: fail, so WeChat tries again
        log.warning("WeChat push nonce check failed: %s", e)
        raise Unavailable("try again") from e
    if not first:
        log.warning("a WeChat push replaying an earlier timestamp + nonce with another body refused")
        raise ReplayedCallback("this timestamp and nonce were already used")


@dataclass(frozen=True)
class Gate:
    """One URL WeChat pushes to, with what admits a request there (the four steps above)."""

    name: str  # for the log: "callback", "message push"
    token: str
    crypto: WeChatCrypto | None
    allow_plain: bool
    window: int
    marks: CallbackMarks
    token_setting: str
    key_setting: str

    async def verify_url(self, request: Request) -> HTTPResponse:
        """The console's URL check: a signed GET whose `echostr` is echoed."""
        check_signed(request.args, self.token, self.window, self.token_setting)
        echostr = request.args.get("echostr")
        if echostr is None:
            raise BadRequest("echostr missing")
        await first_use(self.marks, request.args, b"GET\n" + echostr.encode("utf-8", "surrogatepass"),
                        self.window)
        return text(echostr)

    async def open(self, request: Request, unwrap: Unwrap, parse: Callable[[bytes], T]) -> T:
        """A signed, fresh, first-used POST body, decrypted when in safe mode, parsed."""
        a = request.args
        check_signed(a, self.token, self.window, self.token_setting)
        encrypted = check_encrypted(a, self.crypto is not None, self.allow_plain, self.key_setting)
        try:
            plain = request.body
            if encrypted:
                assert self.crypto is not None
                plain = unwrap(request.body, self.crypto, a.get("msg_signature"), a.get("timestamp"),
                               a.get("nonce"))
            parsed = parse(plain)
        except InvalidSignatureError as e:
            log.warning("%s with a bad msg_signature refused: %s", self.name, e)
            raise Forbidden("invalid msg_signature") from None
        except CallbackError as e:
            log.warning("malformed %s: %s", self.name, e)
            raise BadRequest(str(e)) from None
        await first_use(self.marks, a, b"POST\n" + request.body, self.window)
        return parsed

