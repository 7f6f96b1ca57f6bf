"""`/ws`: the chat socket for mini-program users and agents."""

from __future__ import annotations

import logging
import time
import uuid

from sanic import Request, Websocket

from kefu.auth import request_token
from kefu.core.session import Session
from kefu.errors import Close, translate
from kefu.hub import Conn
from kefu.node import Node
from kefu.protocol import ClientFrame, MarkRead, SendMessage, Sync
from kefu.store.tokens import digest
from kefu.ws.loop import in_background, serve, socket_edge

log = logging.getLogger(__name__)


@socket_edge
async def chat_socket(request: Request, ws: Websocket) -> None:
    node: Node = request.app.ctx.node
    token = request_token(request)
    if not token:
        await ws.close(Close.UNAUTHORIZED, "token required")
        return
    try:
        who = await node.tokens.resolve(token)
    except Exception as e:
        if translate(e) is None:
            log.error("resolving a socket's token failed", exc_info=e)
        await ws.close(Close.TRY_AGAIN, "try again later")  # the token store is down, not the token
        return
    if who is None:
        await ws.close(Close.UNAUTHORIZED, "invalid token")
        return
    session = Session(who, uuid.uuid4().hex, request.args.get("v") == "2", node.limits, time.monotonic(),
                      digest(token), node.epoch)

    async def handle(conn: Conn, req: ClientFrame) -> None:
        if isinstance(req, SendMessage):
            in_background(conn, _accept(node, conn, req), req.cmid)  # the next frame is read while it waits
        elif isinstance(req, Sync):
            messages, more = await node.since(who, req.after, req.limit)
            conn.apply(session.synced(req.after, messages, more))
        elif isinstance(req, MarkRead):
            await node.mark_read(who, req.openid, req.upto, session.conn_id)

    await serve(request, ws, session, handle)


async def _accept(node: Node, conn: Conn, req: SendMessage) -> None:
    accepted = await node.accept(conn.session.who, req, conn.session.conn_id)
    conn.apply(conn.session.accepted(req, accepted))
