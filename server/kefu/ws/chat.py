"""`/ws`: the chat socket for mini-program users and agents."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from sanic import Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

from kefu import metrics
from kefu.auth import request_token
from kefu.core.session import CLOSE_TOO_MANY_ERRORS, CLOSE_UNAUTHORIZED, Session
from kefu.hub import Conn
from kefu.node import Node
from kefu.protocol import (
    MarkRead,
    Ping,
    ProtocolError,
    SendMessage,
    Sync,
    error_frame,
    hello_frame,
    sync_frame,
)
from kefu.store.tokens import digest

log = logging.getLogger(__name__)


def _count_protocol_pings(ws: WebsocketImplProtocol, session: Session) -> None:
    """Sanic answers client pings itself and hides them; a client ping still proves liveness."""
    original = ws.process_events

    async def process_events(events):  # type: ignore[no-untyped-def]
        if any(getattr(e, "opcode", None) is Opcode.PING for e in events):
            session.touch(time.monotonic())
        await original(events)

    ws.process_events = process_events  # type: ignore[method-assign]


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
    _count_protocol_pings(ws, session)
    await node.hub.add(conn)
    if session.v2:
        conn.push(hello_frame(who, node.limits.heartbeat_timeout, node.limits.max_message_bytes))
    acks: set[asyncio.Task] = set()
    try:
        while not conn.closing:
            data = await ws.recv()
            if data is None:
                continue
            metrics.FRAMES_IN.inc()
            try:
                if isinstance(data, bytes):
                    session.touch(time.monotonic())
                    raise ProtocolError("binary", "binary frames are not supported; send JSON text")
                await _handle(node, conn, session.receive(data, time.monotonic()), acks)
            except ProtocolError as e:
                _refuse(conn, e.frame())
    except (ConnectionClosed, WebsocketClosed, asyncio.CancelledError):
        pass
    finally:
        await node.hub.remove(conn)
        for t in acks:
            t.cancel()
        await conn.stop()


def _refuse(conn: Conn, frame: dict) -> None:
    metrics.ERRORS_SENT.labels(frame["code"]).inc()
    conn.push(frame)
    if conn.session.strike(time.monotonic()):
        conn.close_soon(CLOSE_TOO_MANY_ERRORS, "too many errors")


async def _handle(node: Node, conn: Conn, frame, acks: set[asyncio.Task]) -> None:  # type: ignore[no-untyped-def]
    session = conn.session
    who = session.who
    if isinstance(frame, Ping):
        if session.v2:
            conn.push({"cmd": "pong", "ts": int(time.time() * 1000)})
    elif isinstance(frame, SendMessage):
        try:
            accepted = await node.accept(who, frame, session.conn_id)
        except Exception as e:
            log.warning("accepting a message failed: %s", e)
            _refuse(conn, error_frame("unavailable", "message not accepted, resend it", frame.cmid))
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
            _refuse(conn, error_frame("unavailable", "history is unavailable, retry later"))
            return
        conn.push(sync_frame(frame.after, messages, more))
    elif isinstance(frame, MarkRead):
        try:
            await node.mark_read(who, frame.openid, frame.upto, session.conn_id)
        except Exception as e:
            log.warning("mark read failed: %s", e)
            _refuse(conn, error_frame("unavailable", "read mark not saved, retry later"))


async def _ack_when_durable(conn: Conn, accepted, cmid: str | None) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(asyncio.CancelledError):
        frame = await accepted.outcome(cmid)
        if frame is None:
            return
        if frame["cmd"] == "error":
            _refuse(conn, frame)
        else:
            conn.push(frame)
