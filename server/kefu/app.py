"""Sanic app factory: wires settings, engines and routes. Nothing else lives here."""

from __future__ import annotations

import logging
from functools import partial
from json import dumps as json_dumps

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sanic import Request, Sanic, json, redirect
from sanic.response import HTTPResponse, raw

from kefu import engines, migrate
from kefu.config import Settings
from kefu.http.admin import admin_api
from kefu.http.api import api
from kefu.http.errors import error_response
from kefu.http.pages import install_headers, page_csp, serve_directory
from kefu.paths import bundled
from kefu.qr import install as install_qr
from kefu.wechat.setup import make_login_provider
from kefu.ws import admission
from kefu.ws.chat import chat_socket

log = logging.getLogger("kefu")


def create_app(settings: Settings | None = None) -> Sanic:
    settings = settings or Settings()
    app = Sanic("kefu", dumps=partial(json_dumps, ensure_ascii=False, separators=(",", ":")))
    app.config.WEBSOCKET_MAX_SIZE = settings.max_frame_bytes
    app.config.REQUEST_MAX_SIZE = settings.max_frame_bytes
    app.config.ACCESS_LOG = False  # query strings carry tokens
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
    app.ctx.settings = settings
    app.ctx.log = log

    app.blueprint(api)
    app.blueprint(admin_api)
    app.add_websocket_route(chat_socket, "/ws")
    app.error_handler.add(Exception, error_response)
    install_headers(app)  # CSP, nosniff, no framing, no Referer (http/pages.py)
    admission.install(app, settings)  # socket caps, before the upgrade (ws/admission.py)

    @app.get("/healthz")
    async def healthz(request: Request) -> HTTPResponse:
        return json({"ok": True, "connections": request.app.ctx.node.hub.count()})

    @app.get("/metrics")
    async def metrics(_: Request) -> HTTPResponse:
        return raw(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    admin = bundled("web_admin")
    if admin.is_dir():
        serve_directory(app, "/admin/", admin, "admin", page_csp())

        @app.get("/admin")
        async def admin_root(_: Request) -> HTTPResponse:
            return redirect("/admin/")

    @app.before_server_start
    async def start(app: Sanic) -> None:
        if not settings.mysql_url:
            migrate.upgrade(settings)  # the embedded default sets itself up
        elif not migrate.is_current(settings):
            raise RuntimeError("the MySQL schema is not current: run `kefu migrate` first")
        app.ctx.engines = engines.build(settings)
        app.ctx.node = app.ctx.engines.node
        app.ctx.wechat = make_login_provider(settings)
        await app.ctx.node.start()
        log.info("kefu ready on %s:%s (%s)", settings.host, settings.port,
                 "redis+" + ("mysql" if settings.mysql_url else "sqlite") if settings.redis_url
                 else "embedded sqlite")

    @app.before_server_stop
    async def drain(app: Sanic) -> None:
        await app.ctx.node.close_sockets()

    @app.after_server_stop
    async def stop(app: Sanic) -> None:
        await app.ctx.node.stop()
        await app.ctx.wechat.aclose()
        await app.ctx.engines.close()

    install_qr(app, settings)  # QR login + push API; last, so it starts after and stops before the core
    return app
