"""Sanic's HTTP/WebSocket protocol, with the bookkeeping kefu's limits need.

- **Liveness.** Any bytes from the client — a data frame, a protocol-level ping, a close — prove it
  is alive, and Sanic answers pings itself without showing them to the handler. asyncio's
  `data_received` sees every byte, so this subclass (passed to Sanic as its `protocol`, Sanic's
  documented extension point) records the time there. Sanic's own keep-alive pings are off
  (`WEBSOCKET_PING_INTERVAL`): a client's automatic pong would make a silent client look alive;
  kefu's heartbeat (4408) is the one liveness rule.
- **An absolute request deadline.** Sanic restarts its REQUEST_TIMEOUT clock on every chunk of
  data, so a request trickled a byte at a time never times out. Here the clock starts at the
  request's first byte and runs while its head and body arrive: the whole request must be in
  within `REQUEST_TIMEOUT` (else 408, and the connection closes), however it is sliced — also the
  rest of a body Sanic reads and drops after answering early (a 404, a 413). While a request is
  arriving the next check is set at its deadline, so the cut comes at the deadline.
- **The socket slot** (ws/admission.py) an upgraded request holds, given back when the
  connection is lost, whatever happened to the handler.
- **Answering an ordinary upgrade itself** (ws/handshake.py): the 101 is written and the socket
  set up as Sanic does, without websockets' `accept`, its copy of the headers or Sanic's signal
  per write; any other upgrade (a subprotocol offered, a faulty header) goes Sanic's way, so
  websockets judges it and answers its error.
- **Writing a frame at once** (`immediate_writer`): Sanic's `send` takes a lock and awaits the
  transport for every frame, which costs a task switch per frame; while nothing else is writing and
  the transport takes bytes, the frame is framed and written in the caller's step instead.
- **Reading frames at once** (ws/inbox.py): once upgraded, received bytes are parsed in
  `data_received` (ws/reading.py: whole text messages without websockets' parser) and whole
  messages put in the socket's `Inbox`, instead of Sanic's task, lock
  and assembler per chunk and task per `recv`. What websockets answers by itself (a pong, the
  close reply) is written at once, as Sanic would; reading pauses while the inbox is full or the
  transport will not take those answers. A text message that is not UTF-8 closes with 1007.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from sanic import Request, Websocket
from sanic.exceptions import RequestCancelled, RequestTimeout
from sanic.http.constants import Stage
from sanic.log import websockets_logger
from sanic.server.protocols.base_protocol import SanicProtocol
from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from kefu import coalesce
from kefu.core.admission import Slot
from kefu.errors import Close
from kefu.ws import reading
from kefu.ws.handshake import plain_accept, switching_protocols
from kefu.ws.inbox import Inbox

# Why reading is paused (bits): the inbox is full, or the transport holds too much unsent.
_INBOX_FULL, _WRITES_BLOCKED = 1, 2


def _receiving(http: Any) -> bool:
    """The request's head or body is arriving."""
    return http.stage is Stage.REQUEST or _body_pending(http)


def _body_pending(http: Any) -> bool:
    """Body bytes are still due: before the handler runs, or after an error answer while Sanic
    reads and drops the rest (it would read a trickled rest for ever)."""
    # getattr: Sanic checks timeouts once before its Http object has set these up.
    return bool(getattr(http, "request_body", None)) and not getattr(http, "upgrade_websocket", False)


class KefuWebSocketProtocol(WebSocketProtocol):
    __slots__ = ("_deadline_hit", "_holds", "_plain", "_request_started", "inbox", "last_received",
                 "socket_slot")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_received = time.monotonic()
        self.socket_slot: Slot | None = None
        self.inbox: Inbox | None = None
        self._holds = 0
        self._deadline_hit = False
        self._plain = True  # whole text messages are still read without websockets' parser
        self._request_started = self.last_received

    async def websocket_handshake(self, request: Request, subprotocols: Any = None) -> Websocket:
        accept = plain_accept(request) if subprotocols is None and not self.access_log else None
        if accept is None:  # websockets judges it; Sanic logs it when its access log is on
            ws = await super().websocket_handshake(request, subprotocols)
        else:
            ws = await self._switch(accept)
        # No await since Sanic set `self.websocket`: no byte has gone to its reader. Its frame
        # assembler is never used, and is 5 KiB an idle socket would keep (a queue, two events);
        # nor is the event that wakes an HTTP body's reader (Sanic checks it for None).
        self.inbox = Inbox(lambda on: self._hold_reading(_INBOX_FULL, on))
        ws.assembler = None
        self._data_received = None  # type: ignore[assignment]
        return ws

    async def _switch(self, accept: str) -> Websocket:
        """What Sanic's handshake does once websockets has accepted (ws/handshake.py): the 101
        written (without the signal Sanic dispatches per write), then the socket set up."""
        await self._can_write.wait()
        transport = self.transport
        if transport is None or transport.is_closing():
            raise RequestCancelled
        transport.write(switching_protocols(accept))
        ws_proto = ServerProtocol(max_size=self.websocket_max_size, state=State.OPEN,
                                  logger=websockets_logger)
        self.websocket = Websocket(ws_proto, ping_interval=self.websocket_ping_interval,
                                   ping_timeout=self.websocket_ping_timeout,
                                   close_timeout=self.websocket_timeout)
        await self.websocket.connection_made(self, loop=self.loop)
        return self.websocket

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_received = now
        if self.inbox is not None and self.websocket is not None:
            self._frames_received(self.websocket, data)
            return
        http = getattr(self, "_http", None)
        if self.websocket is None and http is not None and not _receiving(http):
            self._request_started = now  # the first byte of a request
        super().data_received(data)

    def check_timeouts(self) -> None:
        if self._deadline_hit:
            self.close()  # the 408 is out; the connection goes, rather than reading on
            return
        http = getattr(self, "_http", None)
        if (self._task and self.websocket is None and http is not None and _receiving(http)
                and time.monotonic() - self._request_started > self.request_timeout):
            if http.stage in (Stage.REQUEST, Stage.HANDLER):
                # What Sanic does at its own (idle) request timeout: answer 408, end the request.
                self._deadline_hit = True
                http.exception = RequestTimeout("Request Timeout")
                self._task.cancel("request not received in time")
                self._callback_check_timeouts = self.loop.call_later(0.2, self.check_timeouts)
            else:
                self.close()  # an answer is out (a 404, say): the connection goes, not reading on
            return
        super().check_timeouts()
        self._check_at_deadline(http)

    def _check_at_deadline(self, http: Any) -> None:
        """Sanic checks every half of its smallest timeout; while a request is arriving, check
        again right at its deadline instead, so the cut comes at the deadline, not up to half a
        timeout after it."""
        handle = self._callback_check_timeouts
        if handle is None or http is None or self.websocket is not None or not _receiving(http):
            return
        remaining = self._request_started + self.request_timeout - time.monotonic()
        if 0 < remaining < handle.when() - self.loop.time():
            handle.cancel()
            self._callback_check_timeouts = self.loop.call_later(remaining + 0.02, self.check_timeouts)

    def _frames_received(self, ws: Websocket, data: bytes) -> None:
        arrived, answers, self._plain = reading.read(ws.ws_proto, data, self._plain)
        self._answer(ws, answers)
        self._dispatch(ws, arrived)

    def _dispatch(self, ws: Websocket, events: Sequence[reading.Arrived | object]) -> None:
        inbox = self.inbox
        assert inbox is not None
        for event in events:
            if isinstance(event, str):
                inbox.put_text(event)
                continue
            if event is None:
                _not_utf8(ws, inbox)
                return
            if not isinstance(event, Frame):
                continue
            op = event.opcode
            if op is Opcode.CLOSE:
                inbox.end()
            elif op is Opcode.PONG:
                _pong(ws, bytes(event.data))
            elif op is not Opcode.PING:  # websockets has queued the pong already
                try:
                    inbox.put(event)
                except UnicodeDecodeError:
                    _not_utf8(ws, inbox)
                    return

    def _answer(self, ws: Websocket, out: list[bytes]) -> None:
        """Write what websockets answered by itself, as Sanic's reader task would (an empty chunk
        means: the closing handshake is done, end the TCP connection)."""
        if not out or ws.ws_proto.state not in (State.OPEN, State.CLOSING):
            return
        transport = self.transport
        for data in out:
            if not data:
                _data_finished(ws, self)
            elif transport is not None and not transport.is_closing():
                transport.write(data)
        if not self._can_write.is_set():
            self._hold_reading(_WRITES_BLOCKED, True)  # a client pinging without reading the pongs

    def _hold_reading(self, reason: int, on: bool) -> None:
        before = self._holds
        self._holds = before | reason if on else before & ~reason
        transport = self.transport
        if transport is None or transport.is_closing() or bool(before) == bool(self._holds):
            return
        if self._holds:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._holds & _WRITES_BLOCKED:
            self._hold_reading(_WRITES_BLOCKED, False)

    def eof_received(self) -> bool | None:
        ws, inbox = self.websocket, self.inbox
        if ws is None or inbox is None:
            return super().eof_received()
        ws.ws_proto.receive_eof()
        self._answer(ws, ws.ws_proto.data_to_send())
        self._dispatch(ws, ws.ws_proto.events_received())
        inbox.end()
        _data_finished(ws, self)
        return False

    def hold_slot(self, slot: Slot) -> None:
        self.release_slot()  # a failed handshake earlier on this keep-alive connection
        self.socket_slot = slot

    def release_slot(self) -> None:
        slot, self.socket_slot = self.socket_slot, None
        if slot is not None:
            slot.release()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self.inbox is not None:
                self.inbox.end()
            self.release_slot()


def inbox_of(request: Request) -> Inbox:
    """The inbox of an upgraded request's connection."""
    protocol = request.protocol
    assert isinstance(protocol, KefuWebSocketProtocol) and protocol.inbox is not None
    return protocol.inbox


def _data_finished(ws: Websocket, io_proto: SanicProtocol) -> None:
    """The end of the data phase, as Sanic's websocket handles it: its auto-closer ends the TCP
    connection, or, without one, the protocol closes."""
    finished = ws.data_finished_fut
    if (ws.auto_closer_task and not ws.auto_closer_task.done() and finished is not None
            and not finished.done()):
        finished.set_result(None)
    else:
        SanicProtocol.close(io_proto, timeout=1.0)


def _not_utf8(ws: Websocket, inbox: Inbox) -> None:
    """A text message that is not UTF-8: nothing more is read, and the connection fails (1007)."""
    inbox.end()
    ws.fail_connection(Close.INVALID_DATA, "invalid UTF-8")


def _pong(ws: Websocket, data: bytes) -> None:
    """Settle the pings (`ws.ping()`) this pong answers: the one it names and all before it."""
    if data not in ws.pings:
        return
    for ping_id in list(ws.pings):
        waiter = ws.pings.pop(ping_id)
        if not waiter.done():
            waiter.set_result(None)
        if ping_id == data:
            return


def text_frame(payload: bytes) -> bytes:
    """A server's unfragmented text frame, as websockets frames it (FIN, no mask, RSV bits clear):
    the header is two to ten bytes, not worth a `Frame`, a `BytesIO` and a check each. Sanic
    negotiates no extension; were one negotiated (permessage-deflate, the only one there is), an
    uncompressed message would still be valid (RFC 7692: RSV1 clear)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def immediate_writer(ws: Websocket) -> Callable[[str], bool]:
    """Write a text frame now if the socket is open, no `send` holds it and the transport is not
    paused (its buffer over the high-water mark); False otherwise, and the caller queues it.
    What Sanic's `send` does, minus the lock and the await: the same frame, the same transport."""
    ws_proto, io_proto = ws.ws_proto, ws.io_proto
    assert io_proto is not None  # set when the connection was upgraded, before the handler runs
    can_write = io_proto._can_write  # Sanic's own backpressure flag: cleared by pause_writing

    def write(text: str) -> bool:
        transport = io_proto.transport
        if (ws.conn_mutex.locked() or ws_proto.state is not State.OPEN or not can_write.is_set()
                or transport is None or transport.is_closing()):
            return False
        coalesce.write(transport, text_frame(text.encode()))
        return True

    return write
