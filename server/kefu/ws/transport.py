"""Sanic's WebSocket protocol, noting when the client last sent anything.

Any bytes from the client — a data frame, a protocol-level ping, a close — prove it is alive, and
Sanic answers pings itself without showing them to the handler. asyncio's `data_received` sees
every byte, so this subclass (passed to Sanic as its `protocol`, Sanic's documented extension
point) records the time there. Sanic's own keep-alive pings are off (`WEBSOCKET_PING_INTERVAL`):
a client's automatic pong would make a silent client look alive; kefu's heartbeat (4408) is the
one liveness rule.
"""

from __future__ import annotations

import time
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol


class KefuWebSocketProtocol(WebSocketProtocol):
    __slots__ = ("last_received",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_received = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        super().data_received(data)
