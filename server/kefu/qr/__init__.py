"""QR scan login and the push API, wired into the app: `install(app, settings)`.

Routes: `GET /qrcode`, `/qr-login` (the page, `web_qr/`), `/ws/qr`, `/wechat/callback`,
`POST /api/push`, `/ws/push` and `/sdk/` (push/install.py); sandbox only: `/qr-image/<ticket>`,
`POST /dev/simulate-scan`. Plus the TCP push port. Call `install` after the core listeners are
registered: it starts after them (it needs the node) and, Sanic running shutdown listeners in
reverse, stops before them.
"""

from __future__ import annotations

from sanic import Request, Sanic, redirect
from sanic.response import HTTPResponse

from kefu.config import Settings
from kefu.http.pages import page_csp, qr_image_origins, serve_directory
from kefu.http.push import push_api
from kefu.http.qr import qr_bp, sandbox_bp
from kefu.http.wechat_callback import wechat_bp
from kefu.paths import bundled
from kefu.push.install import install as install_push
from kefu.pushport import PushPort
from kefu.qr.login import QrLogin
from kefu.qr.store import make_qr_store
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.setup import callback_appid, callback_token, make_oa_provider
from kefu.ws.qr import qr_socket

__all__ = ["install"]


def install(app: Sanic, settings: Settings) -> None:
    install_push(app, settings)  # /ws/push, /sdk/, the push service (before the push port needs it)
    app.blueprint(push_api)
    app.blueprint(qr_bp)
    app.blueprint(wechat_bp)
    if settings.wechat_mode == "sandbox":
        app.blueprint(sandbox_bp)
    app.add_websocket_route(qr_socket, "/ws/qr", name="qr_socket")

    page = bundled("web_qr")
    if page.is_dir():
        serve_directory(app, "/qr-login/", page, "qr_login", page_csp(qr_image_origins(settings)))

        @app.get("/qr-login")
        async def qr_login_root(_: Request) -> HTTPResponse:
            return redirect("/qr-login/")

    @app.before_server_start
    async def start_qr(app: Sanic) -> None:
        node = app.ctx.node
        oa = make_oa_provider(settings, app.ctx.wechat)
        app.ctx.oa = oa
        app.ctx.callback_token = callback_token(settings)
        app.ctx.callback_crypto = (
            WeChatCrypto(app.ctx.callback_token, settings.oa_aes_key, callback_appid(settings))
            if settings.oa_aes_key and app.ctx.callback_token else None)
        app.ctx.qr = QrLogin(settings, node, make_qr_store(app.ctx.engines.redis, settings.redis_prefix),
                             oa)
        app.ctx.push_port = PushPort(settings, app.ctx.pushes)
        await app.ctx.push_port.start()

    @app.before_server_stop
    async def stop_push(app: Sanic) -> None:
        await app.ctx.push_port.stop()

    @app.after_server_stop
    async def stop_qr(app: Sanic) -> None:
        await app.ctx.qr.stop()
        if app.ctx.oa is not None and app.ctx.oa is not app.ctx.wechat:
            await app.ctx.oa.aclose()
