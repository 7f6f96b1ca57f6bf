"""`/ws/qr` and `/ws/push`: the page sockets. No kefu token: a page proves itself with what it binds.

The QR login page sends `{"ticket", "expire_seconds", "uid"}` (from `GET /qrcode`); when the ticket
is the uid's live one the socket is bound to that uid and the frame is echoed back. Any web page can
bind with a bind token its backend minted (`{"cmd": "bind", "token"}`), and — with
KEFU_PUSH_SEED_BINDS — the way Workerman and GatewayWorker pages did (a bare uid on `/ws/push`;
`{"type": "init", "task_id"}`). Until bound a socket receives nothing but error frames (core/page.py).

The chat socket's machinery carries it: the same `Conn` (bounded send queue, 4503), heartbeat sweep
(4408), rate budget, error strikes (4429) and drain (1001). A socket still unbound
`KEFU_QR_BIND_TIMEOUT` seconds after it opened is closed with 4410, whatever kind of bind it tried:
an anonymous socket must bind soon or go, however well it pings. Seed-bound pages never sent
heartbeats, so kefu pings them at the protocol level and the browser's automatic pong keeps them
alive (a page whose network is gone still goes with 4408).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from sanic import Request, Websocket

from kefu.context import ctx
from kefu.core.page import Bind, Ignored, PageFrame, PageSession, SeedBind, TokenBind
from kefu.core.push import group_channel
from kefu.errors import BadTicket, Close
from kefu.hub import Conn
from kefu.push import tokens
from kefu.push.service import PushService
from kefu.ws.loop import SocketHandler, failure, serve, socket_edge

log = logging.getLogger(__name__)


def page_socket(bare_text: bool) -> SocketHandler:
    """The handler of one page path; `bare_text`: a plain-text frame is a uid (`/ws/push`)."""

    @socket_edge
    async def page(request: Request, ws: Websocket) -> None:
        node = ctx(request).node
        qr = ctx(request).qr
        pushes = ctx(request).pushes
        settings = ctx(request).settings
        session = PageSession(os.urandom(16).hex(), request.args.get("v") == "2", node.limits,
                              time.monotonic(), bare_text=bare_text)
        changing = asyncio.Lock()  # one bind or group change of this socket at a time
        pinging: list[bool] = []

        async def rebind(conn: Conn, bind: PageFrame, uid: str = "",
                         groups: tuple[str, ...] = ()) -> None:
            """Move the socket onto its new binding's channels (a page may move on to a fresh QR
            code, or a new token, on the same socket), then join the uid's stored groups."""
            async with changing:
                before = session.groups
                await node.hub.remove(conn)
                if isinstance(bind, Bind):
                    actions = session.bind(bind)
                else:
                    session.bind_uid("token" if isinstance(bind, TokenBind) else "seed", uid, groups)
                try:
                    await node.hub.add(conn)
                    if not isinstance(bind, Bind):
                        stored = await pushes.groups.of(uid)
                        for g in stored:
                            session.joined(g)
                        await node.hub.join(conn, [group_channel(g) for g in session.groups])
                        actions = session.bound_frame()
                except Exception:
                    conn.close_soon(Close.TRY_AGAIN, "try again later")
                    raise
                finally:
                    pushes.counts.touch((*before, *session.groups))
            conn.apply(actions)

        async def handle(conn: Conn, req: PageFrame) -> None:
            if isinstance(req, Ignored):
                return
            if isinstance(req, Bind):
                if session.is_bound_to(req.uid, req.ticket):
                    conn.apply(session.bind(req))
                    return
                if not await qr.ticket_ok(req.uid, req.ticket):
                    raise BadTicket("unknown or expired QR code, or not its ticket")
                await rebind(conn, req)
            elif isinstance(req, TokenBind):
                claims = tokens.verify(req.token, settings.push_bind_secret, settings.push_bind_audience)
                await rebind(conn, req, claims.uid, claims.groups)
            elif isinstance(req, SeedBind):
                if not settings.push_seed_binds:
                    raise tokens.SeedBindsOff("seed binds are off (KEFU_PUSH_SEED_BINDS): bind with a "
                                              "token from your backend (docs/push.md)")
                await rebind(conn, req, req.uid)
                if not pinging:
                    pinging.append(True)
                    conn.spawn(_keep_pinging(ws, settings.heartbeat_timeout / 3))

        def opened(conn: Conn) -> None:
            conn.after(settings.qr_bind_timeout, lambda: _bind_deadline(conn, session))

            def on_group(op: str, group: str) -> asyncio.Task[None]:
                return conn.spawn(_change_group(conn, session, pushes, changing, op, group))

            session.on_group = on_group

        try:
            await serve(request, ws, session, handle, opened)
        finally:
            session.on_group = None  # it holds the Conn, which holds the session: no cycle left
            pushes.counts.touch(session.groups)  # the hub let go of the socket

    return page


qr_socket = page_socket(bare_text=False)
push_socket = page_socket(bare_text=True)


async def _change_group(conn: Conn, session: PageSession, pushes: PushService, changing: asyncio.Lock,
                        op: str, group: str) -> None:
    """The backend made this socket's uid join or leave `group`. A join is listed in the session
    before the hub subscribes it, a leave unsubscribed before it is unlisted: a socket that ends
    meanwhile is never left on a channel."""
    try:
        async with changing:
            if op == "join":
                actions = session.joined(group)
                if actions or group in session.groups:
                    await pushes.node.hub.join(conn, [group_channel(group)])
            else:
                await pushes.node.hub.leave(conn, [group_channel(group)])
                actions = session.left(group)
            pushes.counts.touch([group])
        conn.apply(actions)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        failure(conn, e)
        conn.close_soon(Close.TRY_AGAIN, "try again later")  # reconnect and bind again: all groups


def _bind_deadline(conn: Conn, session: PageSession) -> None:
    if session.binding is None:
        conn.close_soon(Close.BIND_TIMEOUT, "bind timeout")


async def _keep_pinging(ws: Websocket, every: float) -> None:
    """Protocol pings for pages that send no heartbeat of their own (seed binds)."""
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(every)
            await ws.ping()
