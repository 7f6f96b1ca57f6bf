"""Choosing the WeChat providers from the settings: the real clients, or the dev sandbox.

Two WeChat apps are involved: the mini-program (`KEFU_MP_*`, user login by `wx.login` code) and the
Official Account (`KEFU_OA_*`, the login QR codes and their scan callbacks). Each has its own
access_token, so real mode builds one client per app; the sandbox plays both.
"""

from __future__ import annotations

from redis.asyncio import Redis

from kefu.config import Settings
from kefu.wechat.client import WeChatClient, WeChatProvider
from kefu.wechat.sandbox import SandboxWeChat, make_sandbox
from kefu.wechat.token_cache import RedisTokens

#: Where kefu renders sandbox QR images itself (`/qr-image/<url-encoded ticket>`).
SANDBOX_IMAGE_BASE = "/qr-image"
#: The callback token in sandbox mode when KEFU_OA_TOKEN is unset. DEV ONLY: it is public.
SANDBOX_CALLBACK_TOKEN = "kefu-sandbox-callback-token"
#: The appid safe-mode messages name in sandbox mode when KEFU_OA_APPID is unset.
SANDBOX_OA_APPID = "wxsandbox0000000"


#: The message-push token in sandbox mode when KEFU_MP_TOKEN is unset. DEV ONLY: it is public.
SANDBOX_PUSH_TOKEN = "kefu-sandbox-push-token"
#: The appid safe-mode pushes name in sandbox mode when KEFU_MP_APPID is unset.
SANDBOX_MP_APPID = "wxsandbox0000mp0"


def make_login_provider(s: Settings, redis: Redis | None = None) -> WeChatProvider:
    """The mini-program's client: with Redis, its access_token is shared by every process."""
    if s.wechat_mode == "sandbox":
        return make_sandbox(s.env, image_base=SANDBOX_IMAGE_BASE)
    shared = RedisTokens(redis, s.redis_prefix) if redis is not None else None
    return WeChatClient(s.mp_appid, s.mp_secret, api_base=s.wechat_api_base, mp_base=s.wechat_mp_base,
                        shared=shared)


def push_token(s: Settings) -> str:
    """The token mini-program message pushes are checked with; "" means they are refused."""
    if s.mp_token:
        return s.mp_token
    return SANDBOX_PUSH_TOKEN if s.wechat_mode == "sandbox" else ""


def push_appid(s: Settings) -> str:
    return s.mp_appid or (SANDBOX_MP_APPID if s.wechat_mode == "sandbox" else "")


def make_oa_provider(s: Settings, login: WeChatProvider) -> WeChatProvider | None:
    """The Official-Account client for QR codes: the sandbox itself (it serves both apps), a second
    `WeChatClient` in real mode, or None when real mode lacks KEFU_OA_APPID/KEFU_OA_SECRET."""
    if isinstance(login, SandboxWeChat):
        return login
    if not (s.oa_appid and s.oa_secret):
        return None
    return WeChatClient(s.oa_appid, s.oa_secret, api_base=s.wechat_api_base, mp_base=s.wechat_mp_base)


def callback_token(s: Settings) -> str:
    """The token callback signatures are checked with; "" means callbacks are refused."""
    if s.oa_token:
        return s.oa_token
    return SANDBOX_CALLBACK_TOKEN if s.wechat_mode == "sandbox" else ""


def callback_appid(s: Settings) -> str:
    return s.oa_appid or (SANDBOX_OA_APPID if s.wechat_mode == "sandbox" else "")
