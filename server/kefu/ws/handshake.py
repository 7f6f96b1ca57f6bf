"""The opening handshake of an ordinary WebSocket upgrade, answered without websockets' `accept`.

Sanic hands an upgrade request to websockets' `ServerProtocol.accept`, after copying its headers
into websockets' own `Headers` (a dict per header) and before building a `Response` with a date: a
fifth of the server's CPU for a QR page's connect. Nearly every upgrade is the plain kind a browser,
a mini-program or a client library sends, and its answer is fixed but for one header (RFC 6455
§4.2.2). `plain_accept` checks such a request as strictly as websockets does and returns its
`Sec-WebSocket-Accept`; for anything else — a subprotocol offered, a header missing, repeated or
malformed — it returns None and websockets judges the request and answers its error as before.
Extensions offered are ignored, as websockets does when none is configured (kefu configures none).
"""

from __future__ import annotations

import base64
from typing import Protocol

from sanic.compat import Header
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_connection, parse_upgrade
from websockets.utils import accept_key


class RequestHead(Protocol):
    """What the check reads of Sanic's request: its HTTP version and its (case-blind) headers."""

    @property
    def version(self) -> str: ...

    @property
    def headers(self) -> Header: ...


def plain_accept(request: RequestHead) -> str | None:
    """The `Sec-WebSocket-Accept` value if `request` is an HTTP/1.1 upgrade websockets would accept
    with no subprotocol; None if websockets should judge it (it may still accept it)."""
    headers = request.headers
    if request.version != "1.1" or "sec-websocket-protocol" in headers:
        return None  # a subprotocol offered is parsed (and may be refused) by websockets
    try:
        (key,) = headers.getall("sec-websocket-key", [])
        (version,) = headers.getall("sec-websocket-version", [])
        if version != "13" or len(headers.getall("origin", [])) > 1:
            return None
        if len(base64.b64decode(key.encode(), validate=True)) != 16:
            return None
        connection = [c for v in headers.getall("connection", []) for c in parse_connection(v)]
        upgrade = [u for v in headers.getall("upgrade", []) for u in parse_upgrade(v)]
    except (ValueError, InvalidHeader):  # missing, repeated, malformed (binascii.Error is a ValueError)
        return None
    if not any(c.lower() == "upgrade" for c in connection):
        return None
    if len(upgrade) != 1 or upgrade[0].lower() != "websocket":
        return None
    return accept_key(key)


def switching_protocols(accept: str) -> bytes:
    """The 101 answer to a plain upgrade (no extension, no subprotocol)."""
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n")
