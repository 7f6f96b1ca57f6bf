"""`/ws/qr`: the QR login page's socket. No token: the page proves itself with its QR ticket.

The page sends `{"ticket", "expire_seconds", "uid"}` (from `GET /qrcode`); when the ticket is the
uid's live one the socket is bound to that uid and the frame is echoed back. Until then it receives
nothing but error frames. The chat socket's machinery carries it: the same `Conn` (bounded send
queue, 4503), heartbeat sweep (4408), error strikes (4429) and drain (1001). A socket still unbound
`KEFU_QR_BIND_TIMEOUT` seconds after it opened is closed with 4410: an anonymous socket must bind
to a live code soon or go, however well it pings.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from sanic import Request, Websocket

from kefu.core.page import Bind, PageSession
from kefu.errors import BadTicket, Close
from kefu.hub import Conn
from kefu.node import Node
from kefu.qr.login import QrLogin
from kefu.ws.loop import serve, socket_edge


@socket_edge
async def qr_socket(request: Request, ws: Websocket) -> None:
    node: Node = request.app.ctx.node
    qr: QrLogin = request.app.ctx.qr
    session = PageSession(uuid.uuid4().hex, request.args.get("v") == "2", node.limits, time.monotonic())

    async def handle(conn: Conn, req: Bind) -> None:
        if not session.is_bound_to(req.uid, req.ticket):
            if not await qr.ticket_ok(req.uid, req.ticket):
                raise BadTicket("unknown or expired QR code, or not its ticket")
            await node.hub.remove(conn)  # a page may move on to a fresh QR code on the same socket
            actions = session.bind(req)
            try:
                await node.hub.add(conn)
            except Exception:
                conn.close_soon(Close.TRY_AGAIN, "try again later")
                raise
        else:
            actions = session.bind(req)
        conn.apply(actions)

    bind_timeout = request.app.ctx.settings.qr_bind_timeout

    def opened(conn: Conn) -> None:
        conn.spawn(_bind_deadline(conn, session, bind_timeout))

    await serve(request, ws, session, handle, opened)  # unbound at first: swept for idleness, drained


async def _bind_deadline(conn: Conn, session: PageSession, seconds: float) -> None:
    await asyncio.sleep(seconds)
    if session.uid is None:
        conn.close_soon(Close.BIND_TIMEOUT, "bind timeout")
