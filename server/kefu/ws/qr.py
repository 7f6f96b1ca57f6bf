"""`/ws/qr`: the QR login page's socket. No token: the page proves itself with its QR ticket.

The page sends `{"ticket", "expire_seconds", "uid"}` (from `GET /qrcode`); when the ticket is the
uid's live one the socket is bound to that uid and the frame is echoed back. Until then it receives
nothing but error frames. The chat socket's machinery carries it: the same `Conn` (bounded send
queue, 4503), heartbeat sweep (4408), error strikes (4429) and drain (1001).
"""

from __future__ import annotations

import logging
import time
import uuid

from sanic import Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from kefu.core.page import Bind, PageSession
from kefu.hub import Conn
from kefu.node import Node
from kefu.protocol import Ping, ProtocolError, error_frame
from kefu.qr.login import QrLogin
from kefu.ws.loop import pong, refuse, run_socket

log = logging.getLogger(__name__)


async def qr_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    node: Node = request.app.ctx.node
    session = PageSession(uuid.uuid4().hex, request.args.get("v") == "2", node.limits, time.monotonic())
    conn = Conn(session, ws.send, ws.close, request.app.ctx.settings.send_queue)

    async def on_text(text: str) -> None:
        frame = session.receive(text, time.monotonic())
        if isinstance(frame, Ping):
            pong(conn)
        elif isinstance(frame, Bind):
            await _bind(request.app.ctx.qr, node, conn, frame)

    await run_socket(ws, node, conn, on_text)  # unbound at first: swept for idleness, drained


async def _bind(qr: QrLogin, node: Node, conn: Conn, frame: Bind) -> None:
    session: PageSession = conn.session  # type: ignore[assignment]
    if not session.is_bound_to(frame.uid, frame.ticket):
        try:
            ok = await qr.ticket_ok(frame.uid, frame.ticket)
        except Exception as e:
            log.warning("QR store lookup failed: %s", e)
            refuse(conn, error_frame("unavailable", "cannot check the ticket now, retry later"))
            return
        if not ok:
            raise ProtocolError("bad_ticket", "unknown or expired QR code, or not its ticket")
        await node.hub.remove(conn)  # a page may move on to a fresh QR code on the same socket
        session.bind(frame.uid, frame.ticket)
        await node.hub.add(conn)
    conn.push(frame.raw)
