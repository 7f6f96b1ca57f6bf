"""Sanic app factory: wires settings, engines and routes. Nothing else lives here.

Sanic calls the factory once in every worker process, so what must hold in each worker (the
logging configuration, the start-up line naming the engines) is set up here.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from json import dumps as json_dumps

from sanic import Request, Sanic, redirect
from sanic.response import HTTPResponse

from kefu import engines, health, logs, metrics_server, migrate
from kefu.config import Settings
from kefu.cs.install import install as install_cs
from kefu.http.admin import admin_api
from kefu.http.api import api
from kefu.http.desk import desk_api
from kefu.http.errors import error_response
from kefu.http.media import media_api
from kefu.http.pages import install_headers, page_csp, serve_directory
from kefu.media.service import Media
from kefu.paths import bundled
from kefu.preflight import database_label, redis_label
from kefu.qr import install as install_qr
from kefu.wechat.setup import make_login_provider
from kefu.ws import admission
from kefu.ws.chat import chat_socket

log = logging.getLogger("kefu")


def create_app(settings: Settings | None = None) -> Sanic:
    settings = settings or Settings()
    app = Sanic("kefu", dumps=partial(json_dumps, ensure_ascii=False, separators=(",", ":")),
                log_config=logs.config(settings))
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
    app.ctx.settings = settings
    app.ctx.log = log

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

    @app.before_server_start
    async def start(app: Sanic) -> None:
        if not settings.mysql_url:
            migrate.upgrade(settings)  # the embedded default sets itself up
        elif not migrate.is_current(settings):
            raise RuntimeError("the MySQL schema is not current: run `kefu migrate` first")
        app.ctx.engines = engines.build(settings)
        app.ctx.node = app.ctx.engines.node
        app.ctx.wechat = make_login_provider(settings, app.ctx.engines.redis)
        app.ctx.media = Media.from_settings(settings, app.ctx.engines.db)
        app.ctx.node.media = app.ctx.media
        await app.ctx.node.start()
        await app.ctx.media.start()
        log.info("worker %d serving http://%s:%s; database %s; redis %s; wechat %s", os.getpid(),
                 settings.host, settings.port, database_label(settings), redis_label(settings),
                 settings.wechat_mode)

    @app.before_server_stop
    async def drain(app: Sanic) -> None:
        log.info("worker %d stopping: closing %d socket(s)", os.getpid(), app.ctx.node.hub.count())
        await app.ctx.node.close_sockets()

    @app.after_server_stop
    async def stop(app: Sanic) -> None:
        await app.ctx.media.stop()
        await app.ctx.node.stop()
        await app.ctx.wechat.aclose()
        await app.ctx.engines.close()
        metrics_server.process_exit()
        log.info("worker %d stopped", os.getpid())

    install_cs(app, settings)  # WeChat's customer-service channel: starts after the core
    install_qr(app, settings)  # QR login + push API; last, so it starts after and stops before the core
    return app
