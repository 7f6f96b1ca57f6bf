"""DEVELOPMENT-ONLY stand-in for WeChat: any login code is accepted.

With it, the mini-program (in DevTools) and the web pages work without WeChat credentials. It must
never run in production: whoever can post a code becomes that user. `make_sandbox` and the
constructor refuse when the environment is `production`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kefu.wechat.callback import CallbackEvent, build_scan_xml, parse_event
from kefu.wechat.client import CodeSession, QrCode, validate_qr_args
from kefu.wechat.errors import INVALID_CODE, WeChatError

SANDBOX_DEV_ONLY = True  # a marker: nothing in this module is fit for production
DEFAULT_SALT = b"kefu-sandbox-dev-only"
MAX_CODE_LEN = 128
PRODUCTION_REFUSAL = ("WeChat sandbox is dev-only; set KEFU_WECHAT_MODE=real with real "
                      "KEFU_MP_APPID/KEFU_MP_SECRET for production")


def refuse_in_production(env: str) -> None:
    """Raise if `env` is production: the sandbox logs anyone in as anyone."""
    if env.strip().lower() == "production":
        raise RuntimeError(PRODUCTION_REFUSAL)


@dataclass(frozen=True, slots=True)
class SandboxQr:
    scene: str
    expires_at: float


class SandboxWeChat:
    """DEV ONLY. Same async surface as `WeChatClient`; no network.

    `code2session` maps a code to a stable openid (`sbx_` + 24 hex of HMAC-SHA256(salt, code)), so
    typing the same code logs in as the same user across restarts. QR tickets look like WeChat's
    (with `+ / =`) and are remembered so a dev page can `simulate_scan` them."""

    def __init__(self, *, secret_salt: bytes | str = DEFAULT_SALT, image_base: str | None = None,
                 with_unionid: bool = False, oa_id: str = "gh_sandbox00000",
                 env: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        refuse_in_production(env if env is not None else os.environ.get("KEFU_ENV", "dev"))
        self._salt = secret_salt.encode() if isinstance(secret_salt, str) else secret_salt
        self.image_base = image_base.rstrip("/") if image_base is not None else None
        self.with_unionid = with_unionid
        self.oa_id = oa_id
        self._clock = clock
        self.qrcodes: OrderedDict[str, SandboxQr] = OrderedDict()  # oldest first
        self.sent: deque[tuple[str, str]] = deque(maxlen=1000)

    def __repr__(self) -> str:
        return "SandboxWeChat(DEV ONLY)"

    def openid_for(self, code: str) -> str:
        return "sbx_" + self._digest(code)

    async def code2session(self, js_code: str) -> CodeSession:
        if not js_code or len(js_code) > MAX_CODE_LEN:
            raise WeChatError(INVALID_CODE, "sandbox: invalid code")
        unionid = "sbxu_" + self._digest("unionid:" + js_code) if self.with_unionid else None
        return CodeSession(openid=self.openid_for(js_code), unionid=unionid)

    async def create_temp_qrcode(self, scene_str: str, expire_seconds: int) -> QrCode:
        validate_qr_args(scene_str, expire_seconds)
        now = self._clock()
        # Oldest first, while they have expired: each code is dropped once, not every code looked
        # at on every call (a QR page storm made that quadratic). A code that outlives one made
        # before it waits behind it; `scene_for` checks the expiry anyway.
        while self.qrcodes:
            oldest, qr = next(iter(self.qrcodes.items()))
            if qr.expires_at > now:
                break
            del self.qrcodes[oldest]
        ticket = _fake_ticket()
        self.qrcodes[ticket] = SandboxQr(scene_str, now + expire_seconds)
        return QrCode(ticket=ticket, expire_seconds=expire_seconds,
                      url=f"kefu-sandbox://qr/{secrets.token_urlsafe(12)}")

    def qrcode_image_url(self, ticket: str) -> str | None:
        """`{image_base}/{ticket}` (URL-encoded) for a locally rendered image, or None."""
        if self.image_base is None:
            return None
        return f"{self.image_base}/{quote(ticket, safe='')}"

    def scene_for(self, ticket: str) -> str | None:
        """The scene of a live sandbox ticket, or None if unknown or expired."""
        qr = self.qrcodes.get(ticket)
        return qr.scene if qr is not None and qr.expires_at > self._clock() else None

    def simulate_scan(self, ticket: str, oa_openid: str, *, subscribe: bool = False) -> CallbackEvent:
        """The event WeChat would push if `oa_openid` scanned `ticket` (through the real parser)."""
        scene = self.scene_for(ticket)
        if scene is None:
            raise LookupError("unknown or expired sandbox ticket")
        xml = build_scan_xml(to_user=self.oa_id, from_user=oa_openid, scene=scene, ticket=ticket,
                             subscribe=subscribe)
        return parse_event(xml)

    async def send_custom_text(self, openid: str, content: str) -> None:
        self.sent.append((openid, content))

    async def send_custom_image(self, openid: str, media_id: str) -> None:
        self.sent.append((openid, f"[image {media_id}]"))

    async def upload_temp_image(self, data: bytes, mime: str) -> str:
        return "sbx_media_" + secrets.token_hex(8)

    async def get_temp_media(self, media_id: str) -> bytes:
        raise WeChatError(40007, "sandbox: no temporary media (use real mode against WeChat)")

    async def set_typing(self, openid: str, typing: bool) -> None:
        self.sent.append((openid, "[typing]" if typing else "[typing off]"))

    async def send_subscribe(self, openid: str, template_id: str, page: str, data: dict[str, Any],
                             state: str) -> None:
        self.sent.append((openid, f"[subscribe {template_id} → {page}]"))

    async def aclose(self) -> None:
        return None

    def _digest(self, text: str) -> str:
        return hmac.new(self._salt, text.encode(), hashlib.sha256).hexdigest()[:24]


def _fake_ticket() -> str:
    """Random, base64-looking, and always containing `+`, `/` and `=` so URL-encoding bugs show."""
    body = base64.b64encode(secrets.token_bytes(30)).decode()
    return f"gQH{body[:12]}+{body[12:24]}/{body[24:]}=="


def make_sandbox(env: str, *, secret_salt: bytes | str = DEFAULT_SALT,
                 image_base: str | None = None, with_unionid: bool = False) -> SandboxWeChat:
    """The dev-only sandbox provider; `RuntimeError` when `env` is production."""
    refuse_in_production(env)
    return SandboxWeChat(secret_salt=secret_salt, image_base=image_base,
                         with_unionid=with_unionid, env=env)
