"""Choosing the login provider from the settings: the real mini-program client, or the dev sandbox."""

from __future__ import annotations

from kefu.config import Settings
from kefu.wechat.client import WeChatClient, WeChatProvider
from kefu.wechat.sandbox import make_sandbox


def make_login_provider(s: Settings) -> WeChatProvider:
    if s.wechat_mode == "sandbox":
        return make_sandbox(s.env)
    return WeChatClient(s.mp_appid, s.mp_secret, api_base=s.wechat_api_base, mp_base=s.wechat_mp_base)
