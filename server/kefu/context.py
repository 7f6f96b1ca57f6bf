"""The typed context of one worker: every shared part, reached through `ctx(request)`.

`app.ctx` is a `Context` (Sanic's typed ctx). Its parts are made when the worker starts — they need
the event loop and the settings' engines — by lifecycle.py, the composition root, in one order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from sanic import Request

from kefu.config import Settings

if TYPE_CHECKING:  # only for the annotations: the parts are made by lifecycle.py
    from kefu.core.admission import SocketCaps
    from kefu.cs.channel import CsChannel
    from kefu.engines import Engines
    from kefu.http.wechat_guard import Gate
    from kefu.media.service import Media
    from kefu.node import Node
    from kefu.push.port import PushPort
    from kefu.push.service import PushService
    from kefu.qr.login import QrLogin
    from kefu.store.login_throttle import LoginThrottle
    from kefu.store.qr_quota import QrQuota
    from kefu.wechat.client import WeChatProvider


@dataclass(eq=False)
class Context:
    """One worker's shared parts. The fields below `settings` exist once lifecycle.start has run."""

    settings: Settings
    engines: Engines = field(init=False)
    node: Node = field(init=False)
    wechat: WeChatProvider = field(init=False)  # mini-program logins (and the channel's API calls)
    media: Media = field(init=False)
    socket_caps: SocketCaps = field(init=False)
    login_throttle: LoginThrottle = field(init=False)
    qr_quota: QrQuota = field(init=False)
    cs: CsChannel = field(init=False)  # WeChat's customer-service channel
    mp_gate: Gate = field(init=False)  # what admits the mini-program's message push
    pushes: PushService = field(init=False)
    oa: WeChatProvider | None = field(init=False)  # the Official Account (QR login)
    callback_gate: Gate = field(init=False)  # what admits the Official Account's callback
    qr: QrLogin = field(init=False)
    push_port: PushPort = field(init=False)
    recheck: asyncio.Task[None] | None = field(init=False, default=None)


def ctx(request: Request) -> Context:
    """The worker's parts, typed."""
    return cast(Context, request.app.ctx)
