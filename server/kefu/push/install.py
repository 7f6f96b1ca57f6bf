"""Wiring the push vocabulary into the app: `/ws/push`, the browser SDK at `/sdk/`, and the push
service every push edge (HTTP, the TCP port) shares. Called by the QR/push installer before its own
listeners, so the service exists when the push port starts and outlives it at shutdown."""

from __future__ import annotations

import logging

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from kefu.config import Settings
from kefu.http.pages import API_CSP, serve_directory
from kefu.paths import bundled
from kefu.push.counts import GroupCounts, LocalCounts, RedisCounts
from kefu.push.groups import GroupStore, MemoryGroups, RedisGroups
from kefu.push.service import PushService
from kefu.ws.qr import push_socket

log = logging.getLogger("kefu")

SEED_WARNING = (
    "seed binds are ON (KEFU_PUSH_SEED_BINDS=true): a page that sends a bare uid on /ws/push, or "
    '{"type":"init","task_id":…}, receives every push to that id — anyone who knows or guesses an '
    "id gets its pushes. Acceptable only while the ids are random and short-lived (docs/push.md)")


def install(app: Sanic, settings: Settings) -> None:
    app.add_websocket_route(push_socket, "/ws/push", name="push_socket")
    sdk = bundled("web_sdk")
    if sdk.is_dir():  # scripts, not pages: a page of any origin may load them (as modules too)
        serve_directory(app, "/sdk/", sdk, "sdk", API_CSP)

        @app.on_response
        async def sdk_cors(request: Request, response: HTTPResponse) -> None:
            if request.path.startswith("/sdk/"):
                response.headers["Access-Control-Allow-Origin"] = "*"

    @app.before_server_start
    async def start_pushes(app: Sanic) -> None:
        node = app.ctx.node
        redis = app.ctx.engines.redis
        channels = lambda: node.hub.channels  # noqa: E731
        groups: GroupStore = MemoryGroups() if redis is None else RedisGroups(redis, settings.redis_prefix)
        counts: GroupCounts = (LocalCounts(channels) if redis is None
                               else RedisCounts(redis, settings.redis_prefix, channels))
        app.ctx.pushes = PushService(node, groups, counts)
        await counts.start()
        if settings.push_seed_binds:
            log.warning(SEED_WARNING)
        if not settings.push_bind_secret:
            log.info("token binds are off: set KEFU_PUSH_BIND_SECRET so that pages can bind with "
                     "tokens from your backend (docs/push.md)")

    @app.after_server_stop
    async def stop_pushes(app: Sanic) -> None:
        await app.ctx.pushes.counts.stop()
