"""The receive loop every kefu socket shares (chat `/ws`, QR page `/ws/qr`).

It keeps the socket on the hub while open, turns each text frame over to the endpoint's handler,
answers bad frames with error frames (and closes after too many: 4429), and always takes the
socket off every map when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

from kefu import metrics
from kefu.core.session import CLOSE_TOO_MANY_ERRORS, Session
from kefu.hub import Conn
from kefu.node import Node
from kefu.protocol import ProtocolError


def refuse(conn: Conn, frame: dict) -> None:
    """Send an error frame; a socket that keeps erring is closed (4429)."""
    metrics.ERRORS_SENT.labels(frame["code"]).inc()
    conn.push(frame)
    if conn.session.strike(time.monotonic()):
        conn.close_soon(CLOSE_TOO_MANY_ERRORS, "too many errors")


def pong(conn: Conn) -> None:
    """Protocol v2 answers `{"cmd": "ping"}`; v1 clients never expected an answer."""
    if conn.session.v2:
        conn.push({"cmd": "pong", "ts": int(time.time() * 1000)})


def _count_protocol_pings(ws: WebsocketImplProtocol, session: Session) -> None:
    """Sanic answers client pings itself and hides them; a client ping still proves liveness."""
    original = ws.process_events

    async def process_events(events):  # type: ignore[no-untyped-def]
        if any(getattr(e, "opcode", None) is Opcode.PING for e in events):
            session.touch(time.monotonic())
        await original(events)

    ws.process_events = process_events  # type: ignore[method-assign]


async def run_socket(ws: WebsocketImplProtocol, node: Node, conn: Conn,
                     on_text: Callable[[str], Awaitable[None]]) -> None:
    """Serve `conn` until the peer goes. `on_text` handles one text frame and may raise
    ProtocolError, which becomes an error frame on this socket only."""
    session = conn.session
    _count_protocol_pings(ws, session)
    await node.hub.add(conn)
    try:
        while True:
            data = await ws.recv()
            # Once closing, keep reading (and dropping) until the close handshake completes: an
            # unread frame would stall Sanic's reader, and the peer's close reply behind it (1006).
            if data is None or conn.closing:
                continue
            metrics.FRAMES_IN.inc()
            try:
                if isinstance(data, bytes):
                    session.touch(time.monotonic())
                    raise ProtocolError("binary", "binary frames are not supported; send JSON text")
                await on_text(data)
            except ProtocolError as e:
                refuse(conn, e.frame())
    except (ConnectionClosed, WebsocketClosed, asyncio.CancelledError):
        pass
    finally:
        await node.hub.remove(conn)
        await conn.stop()
