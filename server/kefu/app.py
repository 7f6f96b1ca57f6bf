"""Sanic app factory: wires settings, engines and routes. Nothing else lives here.

Sanic calls the factory once in every worker process, so what must hold in each worker (the
logging configuration, the start-up line naming the engines) is set up here.
"""

from __future__ import annotations

import logging
from functools import partial
from json import dumps as json_dumps

from sanic import Request, Sanic, redirect
from sanic.response import HTTPResponse

from kefu import health, lifecycle, logs
from kefu.config import Settings
from kefu.context import Context
from kefu.cs.install import install as install_cs
from kefu.http.admin import admin_api
from kefu.http.api import api
from kefu.http.desk import desk_api
from kefu.http.errors import error_response
from kefu.http.media import media_api
from kefu.http.pages import install_headers, page_csp, serve_directory
from kefu.paths import bundled
from kefu.qr import install as install_qr
from kefu.ws import admission
from kefu.ws.chat import chat_socket

log = logging.getLogger("kefu")


def create_app(settings: Settings | None = None) -> Sanic:
    settings = settings or Settings()
    app = Sanic("kefu", dumps=partial(json_dumps, ensure_ascii=False, separators=(",", ":")),
                log_config=logs.config(settings), ctx=Context(settings))
    logging.captureWarnings(True)
    app.config.WEBSOCKET_MAX_SIZE = settings.max_frame_bytes
    app.config.REQUEST_MAX_SIZE = settings.max_frame_bytes
    app.config.ACCESS_LOG = settings.access_log  # off by default; tokens are scrubbed when on
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 10.0
    app.config.WEBSOCKET_PING_INTERVAL = None  # type: ignore[assignment]  # kefu's heartbeat decides
    # A request's head and body must arrive within REQUEST_TIMEOUT of its first byte (ws/transport.py
    # makes Sanic's idle clock absolute); idle keep-alive connections go after KEEP_ALIVE_TIMEOUT.
    app.config.REQUEST_TIMEOUT = settings.request_timeout  # type: ignore[assignment]
    app.config.KEEP_ALIVE_TIMEOUT = settings.keep_alive_timeout  # type: ignore[assignment]
    app.config.REQUEST_MAX_HEADER_SIZE = settings.request_max_header_size
    # Client addresses (login throttling): forwarded headers count only as configured (security.md).
    app.config.PROXIES_COUNT = settings.proxies_count or None
    app.config.REAL_IP_HEADER = settings.real_ip_header or None
    app.config.FORWARDED_SECRET = settings.forwarded_secret or None

    app.blueprint(api)
    app.blueprint(admin_api)
    app.blueprint(desk_api)
    app.blueprint(media_api)
    app.add_websocket_route(chat_socket, "/ws")
    app.error_handler.add(Exception, error_response)
    health.install(app)  # /metrics is not here: it has its own bind (metrics_server)
    install_headers(app)  # CSP, nosniff, no framing, no Referer (http/pages.py)
    admission.install(app, settings)  # socket caps, before the upgrade (ws/admission.py)

    admin = bundled("web_admin")
    if admin.is_dir():
        serve_directory(app, "/admin/", admin, "admin", page_csp())

        @app.get("/admin")
        async def admin_root(_: Request) -> HTTPResponse:
            return redirect("/admin/")

    lifecycle.install(app)  # the one start and stop of everything (lifecycle.py)
    install_cs(app)  # WeChat's customer-service channel: its routes
    install_qr(app, settings)  # QR login and the pushes: their routes
    return app
