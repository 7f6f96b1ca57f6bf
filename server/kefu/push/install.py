"""Wiring the push vocabulary into the app: `/ws/push` and the browser SDK at `/sdk/`. The push
service every push edge (HTTP, the TCP port, these sockets) shares is made by context.py."""

from __future__ import annotations

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from kefu.config import Settings
from kefu.http.pages import API_CSP, serve_directory
from kefu.paths import bundled
from kefu.ws.qr import push_socket


def install(app: Sanic, settings: Settings) -> None:
    app.add_websocket_route(push_socket, "/ws/push", name="push_socket")
    sdk = bundled("web_sdk")
    if sdk.is_dir():  # scripts, not pages: a page of any origin may load them (as modules too)
        serve_directory(app, "/sdk/", sdk, "sdk", API_CSP)

        @app.on_response
        async def sdk_cors(request: Request, response: HTTPResponse) -> None:
            if request.path.startswith("/sdk/"):
                response.headers["Access-Control-Allow-Origin"] = "*"
