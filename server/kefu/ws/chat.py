"""`/ws`: the chat socket for mini-program users and agents."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from sanic import Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from kefu.auth import request_token
from kefu.core.session import CLOSE_UNAUTHORIZED, Session
from kefu.hub import Conn
from kefu.node import Node
from kefu.protocol import (
    MarkRead,
    Ping,
    SendMessage,
    Sync,
    error_frame,
    hello_frame,
    sync_frame,
)
from kefu.store.tokens import digest
from kefu.ws.loop import pong, refuse, run_socket

log = logging.getLogger(__name__)


async def chat_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    node: Node = request.app.ctx.node
    token = request_token(request)
    if not token:
        await ws.close(CLOSE_UNAUTHORIZED, "token required")
        return
    try:
        who = await node.tokens.resolve(token)
    except Exception:
        log.exception("token lookup failed")
        await ws.close(1011, "token store unavailable")
        return
    if who is None:
        await ws.close(CLOSE_UNAUTHORIZED, "invalid token")
        return
    session = Session(who, uuid.uuid4().hex, request.args.get("v") == "2", node.limits,
                      time.monotonic(), digest(token))
    conn = Conn(session, ws.send, ws.close, request.app.ctx.settings.send_queue)
    if session.v2:
        conn.push(hello_frame(who, node.limits.heartbeat_timeout, node.limits.max_message_bytes))
    acks: set[asyncio.Task] = set()

    async def on_text(text: str) -> None:
        await _handle(node, conn, session.receive(text, time.monotonic()), acks)

    try:
        await run_socket(ws, node, conn, on_text)
    finally:
        for t in acks:
            t.cancel()


async def _handle(node: Node, conn: Conn, frame, acks: set[asyncio.Task]) -> None:  # type: ignore[no-untyped-def]
    session = conn.session
    who = session.who
    if isinstance(frame, Ping):
        pong(conn)
    elif isinstance(frame, SendMessage):
        try:
            accepted = await node.accept(who, frame, session.conn_id)
        except Exception as e:
            log.warning("accepting a message failed: %s", e)
            refuse(conn, error_frame("unavailable", "message not accepted, resend it", frame.cmid))
            return
        # Wait for durability off the receive loop, so the next frame is read meanwhile.
        task = asyncio.create_task(_ack_when_durable(conn, accepted, frame.cmid))
        acks.add(task)
        task.add_done_callback(acks.discard)
    elif isinstance(frame, Sync):
        try:
            messages, more = await node.since(who, frame.after, frame.limit)
        except Exception as e:
            log.warning("sync failed: %s", e)
            refuse(conn, error_frame("unavailable", "history is unavailable, retry later"))
            return
        conn.push(sync_frame(frame.after, messages, more))
    elif isinstance(frame, MarkRead):
        try:
            await node.mark_read(who, frame.openid, frame.upto, session.conn_id)
        except Exception as e:
            log.warning("mark read failed: %s", e)
            refuse(conn, error_frame("unavailable", "read mark not saved, retry later"))


async def _ack_when_durable(conn: Conn, accepted, cmid: str | None) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(asyncio.CancelledError):
        frame = await accepted.outcome(cmid)
        if frame is None:
            return
        if frame["cmd"] == "error":
            refuse(conn, frame)
        else:
            conn.push(frame)
