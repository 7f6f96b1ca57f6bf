"""The receive loop every kefu socket shares (chat `/ws`, QR page `/ws/qr`): it moves frames.

The session decides everything (what to answer, when to close); this loop reads a frame, hands it
to the session, carries out the returned actions and passes the session's request to the
endpoint's handler. It keeps the socket on the hub while open and always takes it off every map
when it ends, however it ends. It is also the socket edge's last resort: whatever a handler raises
becomes an error frame (`errors.translate`), a bug is logged without the request URL (which
carries the token), and nothing escapes to Sanic's own error log (which would quote the URL):
`socket_edge` wraps every socket handler, and gives the socket's slot back when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sanic import Request, Websocket
from sanic.exceptions import WebsocketClosed
from websockets.exceptions import ConnectionClosed

from kefu import metrics
from kefu.context import ctx
from kefu.core.session import Session
from kefu.errors import Close, Internal, translate
from kefu.hub import Conn
from kefu.ws import admission
from kefu.ws.transport import immediate_writer, inbox_of

log = logging.getLogger(__name__)
Handler = Callable[[Conn, Any], Awaitable[None]]
SocketHandler = Callable[[Request, Websocket], Awaitable[None]]
T = TypeVar("T")


def socket_edge(handler: SocketHandler) -> SocketHandler:
    """The last resort of a socket route: whatever escapes the handler is logged here, without
    the URL, and the socket closed with 1011; its slot is given back however it ends."""
    @functools.wraps(handler)
    async def run(request: Request, ws: Websocket) -> None:
        try:
            await handler(request, ws)
        except (ConnectionClosed, WebsocketClosed):
            pass
        except Exception:
            log.exception("a socket handler failed")
            with contextlib.suppress(Exception):
                await ws.close(Close.INTERNAL, "internal error")
        finally:
            admission.release(request)

    return run


def failure(conn: Conn, exc: BaseException, cmid: str | None = None) -> None:
    """Report `exc` on this socket as the error family says (and strike if it is the client's);
    `cmid` names the message it answers."""
    err = translate(exc)
    if err is None:
        log.error("a %s socket's request failed", conn.session.who.role, exc_info=exc)
        err = Internal("internal error")
    if cmid is not None and err.cmid != cmid:
        err = copy.copy(err)  # one error may answer a whole batch of messages
        err.cmid = cmid
    metrics.ERRORS_SENT.labels(err.code).inc()
    conn.apply(conn.session.failed(err, time.monotonic()))


async def serve(request: Request, ws: Websocket, session: Session, handle: Handler,
                opened: Callable[[Conn], None] | None = None) -> None:
    """Serve one socket until the peer goes. `opened` runs once the socket is on the hub (to
    spawn its timers on the `Conn`)."""
    node = ctx(request).node
    settings = ctx(request).settings
    protocol = request.protocol
    inbox = inbox_of(request)
    conn = Conn(session, ws.send, ws.close, settings.send_queue_bytes, settings.send_queue,
                last_received=(lambda: getattr(protocol, "last_received", 0.0)),
                write_now=immediate_writer(ws))
    try:
        await node.hub.add(conn)
    except Exception as e:
        if translate(e) is None:
            log.error("a %s socket could not be registered", session.who.role, exc_info=e)
        await ws.close(Close.TRY_AGAIN, "try again later")
        await conn.stop(0)
        return
    try:
        conn.apply(session.open())
        if opened is not None:
            opened(conn)
        while (data := await inbox.get()) is not None:
            # Once closing, keep reading (and dropping) until the close handshake completes: a
            # full inbox would stop reading, and the peer's close reply behind it (1006).
            if conn.closing:
                continue
            metrics.FRAMES_IN.inc()
            actions, req = session.receive(data, time.monotonic())
            conn.apply(actions)
            if req is not None:
                try:
                    await handle(conn, req)
                except Exception as e:
                    failure(conn, e)
    except (ConnectionClosed, WebsocketClosed, asyncio.CancelledError):
        pass
    except Exception:
        log.exception("a %s socket failed", session.who.role)
    finally:
        await node.hub.remove(conn)
        await conn.stop()


def when_settled(conn: Conn, start: Callable[[], asyncio.Future[T]], then: Callable[[T], None],
                 cmid: str | None = None) -> None:
    """Run request work beside the receive loop (a message waits for durability while the next
    frame is read): `start` returns its future — the journal's, or a task from `conn.spawn` for
    work that must await first — and `then` runs in its done callback. A failure, raised by
    `start` or later, is reported on the socket like any other; `cmid` names the message."""
    try:
        fut = start()
    except Exception as e:
        failure(conn, e, cmid)
        return

    def settled(f: asyncio.Future[T]) -> None:
        try:
            then(f.result())
        except asyncio.CancelledError:
            pass
        except Exception as e:
            failure(conn, e, cmid)

    fut.add_done_callback(settled)
