"""QR scan login and the push API, wired into the app: `install(app, settings)`.

Routes: `GET /qrcode`, `/qr-login` (the page, `web_qr/`), `/ws/qr`, `/wechat/callback`,
`POST /api/push`, `/ws/push` and `/sdk/` (push/install.py); sandbox only: `/qr-image/<ticket>`,
`POST /dev/simulate-scan`. The parts they use (QR login, the push service, the TCP push port) are
made and stopped by context.py.
"""

from __future__ import annotations

from sanic import Request, Sanic, redirect
from sanic.response import HTTPResponse

from kefu.config import Settings
from kefu.http.pages import page_csp, qr_image_origins, serve_directory
from kefu.http.qr import qr_bp, sandbox_bp
from kefu.http.wechat_callback import wechat_bp
from kefu.paths import bundled
from kefu.push.api import push_api
from kefu.push.install import install as install_push
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
