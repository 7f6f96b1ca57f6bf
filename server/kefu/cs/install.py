"""WeChat's customer-service channel, wired into the app: `install(app, settings)`.

Routes: `/wechat/mp` (the mini-program's message push), `/api/me/subscribe`,
`/api/wechat/reach/{openid}`. The channel itself (hooked to the node's replies and typing) is made
and stopped by context.py.
"""

from __future__ import annotations

from sanic import Sanic

from kefu.http.wechat_mp import mp_bp

__all__ = ["install"]


def install(app: Sanic) -> None:
    app.blueprint(mp_bp)
