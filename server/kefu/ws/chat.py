"""`/ws`: the chat socket for mini-program users and agents."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from sanic import Request, Websocket

from kefu.auth import request_token
from kefu.context import ctx
from kefu.core.session import Accepted, Session
from kefu.errors import Close, translate
from kefu.hub import Conn
from kefu.node import Node
from kefu.protocol import (
    ChangeStatus,
    ClientFrame,
    JoinDesk,
    MarkRead,
    Note,
    SendMessage,
    SetPresence,
    Sync,
    Typing,
)
from kefu.store.tokens import digest
from kefu.ws.loop import serve, socket_edge, when_settled

log = logging.getLogger(__name__)


@socket_edge
async def chat_socket(request: Request, ws: Websocket) -> None:
    node = ctx(request).node
    token = request_token(request)
    if not token:
        await ws.close(Close.UNAUTHORIZED, "token required")
        return
    try:
        who = await node.identify(token)
    except Exception as e:
        if translate(e) is None:
            log.error("resolving a socket's token failed", exc_info=e)
        await ws.close(Close.TRY_AGAIN, "try again later")  # the token store is down, not the token
        return
    if who is None:
        await ws.close(Close.UNAUTHORIZED, "invalid token")
        return
    session = Session(who, uuid.uuid4().hex, request.args.get("v") == "2", node.limits, time.monotonic(),
                      digest(token), node.epoch, team=node.desk.team)

    async def handle(conn: Conn, req: ClientFrame) -> None:
        # A message's ack waits for durability while the next frames are read.
        if isinstance(req, SendMessage) and req.image is None:
            when_settled(conn, lambda: node.submit(who, req, session.conn_id), _ack(conn, req), req.cmid)
        elif isinstance(req, SendMessage):  # a picture is fetched and checked first: a task
            accepting = node.accept(who, req, session.conn_id)
            when_settled(conn, lambda: conn.spawn(accepting), _ack(conn, req), req.cmid)
        elif isinstance(req, Note):
            when_settled(conn, lambda: node.note(who, req, session.conn_id), _ack(conn, req), req.cmid)
        elif isinstance(req, Sync):
            messages, more = await node.since(who, req.after, req.limit, everything=session.desk)
            conn.apply(session.synced(req.after, messages, more))
        elif isinstance(req, MarkRead):
            await node.mark_read(who, req.openid, req.upto, session.conn_id)
        elif isinstance(req, Typing):
            await node.typing(who, req, session.conn_id)
        else:
            await _desk_request(node, conn, req)

    try:
        await serve(request, ws, session, handle)
    finally:
        if who.role == "agent" and session.desk:
            node.desk.background.spawn(node.desk.left(who), "announcing an agent offline")


def _ack(conn: Conn, req: SendMessage | Note) -> Callable[[Accepted], None]:
    return lambda accepted: conn.apply(conn.session.accepted(req, accepted))



async def _desk_request(node: Node, conn: Conn, req: ClientFrame) -> None:
    """Team requests (docs/protocol.md §10): lifecycle changes, presence, joining the desk."""
    who = conn.session.who
    if isinstance(req, ChangeStatus):
        frame = await node.desk.change(who, req)
        conn.send_frame({**frame, "cmid": req.cmid} if req.cmid else frame)
    elif isinstance(req, SetPresence):
        await node.desk.set_presence(who, req.status)
    elif isinstance(req, JoinDesk):
        conn.send_frame({"cmd": "desk", "all": conn.session.watch_all, "agents": await node.desk.roster()})
        node.desk.background.spawn(node.desk.announce(who), "announcing an agent")
