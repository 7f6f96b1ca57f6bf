"""The load generator's sockets: a minimal WebSocket client and a pipelining push-line client.

Both are plain asyncio protocols, not the `websockets` library, because on a 2-core machine every
microsecond the generator spends per frame is taken from the server it measures; the benchmark
refuses to report when the generator saturates its core, and these keep it far from that. The
WebSocket client does what RFC 6455 asks of a client (random masking key per connection, pongs,
the closing handshake) and no more: no extensions, text frames only.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import deque
from collections.abc import Callable
from typing import cast

MAX_HANDSHAKE = 16384


class WsClosed(ConnectionError):
    """The socket closed (or never opened) while a frame was awaited."""


class WsClient(asyncio.Protocol):
    """One client socket. Text frames go to `on_text` when set, else to `recv()`."""

    def __init__(self, host: str, port: int, path: str) -> None:
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()  # the TCP connection ended
        self.on_text: Callable[[bytes], None] | None = None
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None
        self._key = os.urandom(4)
        self._masks: dict[int, int] = {}  # payload length → the key repeated to it, as an int
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._inbox: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None

    # ---- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.opened.done():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HANDSHAKE:
                    self._fail(WsClosed("handshake response too long"))
                return
            status = bytes(self._buf[:self._buf.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self._fail(WsClosed(f"handshake refused: {status.decode(errors='replace')}"))
                return
            del self._buf[:end + 4]
            self.opened.set_result(None)
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(WsClosed(f"connection lost during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_code or 1006)
        self._wake()

    # ---- frames ------------------------------------------------------------------------------

    def _frames(self) -> None:
        buf, pos, end = self._buf, 0, len(self._buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, head = b1 & 0x7F, 2
            if size == 126:
                if end - pos < 4:
                    break
                size, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if b1 & 0x80:
                self._fail(WsClosed("the server masked a frame"))
                return
            if end - pos < head + size:
                break
            payload = bytes(buf[pos + head:pos + head + size])
            pos += head + size
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (0, 1, 2):
            self._fragments.append(payload)
            if fin:
                text, self._fragments = b"".join(self._fragments), []
                if self.on_text is not None:
                    self.on_text(text)
                else:
                    self._inbox.append(text)
                    self._wake()
        elif opcode == 8:  # close: answer it, then the server closes TCP
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._write(0x88, payload[:2])
            self._wake()
        elif opcode == 9:
            self._write(0x8A, payload)

    def _write(self, first: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            head = bytes((first, 0x80 | n))
        elif n < 65536:
            head = bytes((first, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((first, 0xFF)) + n.to_bytes(8, "big")
        mask = self._masks.get(n)
        if mask is None:
            mask = self._masks[n] = int.from_bytes((self._key * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")
        self.transport.write(head + self._key + masked)

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- API ---------------------------------------------------------------------------------

    def send_text(self, payload: bytes) -> None:
        self._write(0x81, payload)

    async def recv(self, timeout: float = 10.0) -> bytes:
        """The next text frame (only while `on_text` is unset)."""
        async with asyncio.timeout(timeout):
            while not self._inbox:
                if self.close_code is not None or self.closed.done():
                    raise WsClosed(f"closed with {self.close_code or 1006}")
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        return self._inbox.popleft()

    def start_close(self) -> None:
        """Begin the closing handshake (1000); `closed` resolves when the server has closed TCP,
        as RFC 6455 has it (a client that drops the connection first can leave a server waiting)."""
        self._write(0x88, (1000).to_bytes(2, "big"))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def ws_connect(host: str, port: int, path: str, timeout: float = 10.0) -> WsClient:
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: WsClient(host, port, path), host, port), timeout)
    await asyncio.wait_for(client.opened, timeout)
    return client


async def close_all(clients: list[WsClient], timeout: float = 5.0) -> None:
    """Close every socket politely, then drop whatever has not answered within `timeout`."""
    for c in clients:
        c.start_close()
    pending = [c.closed for c in clients if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for c in clients:
        c.abort()


class LinePusher(asyncio.Protocol):
    """A backend on the TCP push port that keeps `window` lines in flight (a sliding window).

    `make_line(now)` returns the next line (ending in a newline) or None when the run is over; every
    reply line is matched, in order, with the time its line was written.
    """

    def __init__(self, make_line: Callable[[float], bytes | None], window: int) -> None:
        self.make_line = make_line
        self.window = window
        self.sent_at: deque[float] = deque()
        self.reply_s: list[float] = []
        self.ok = self.fail = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._tail = b""
        self._exhausted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def start(self) -> None:
        self._top_up()

    def _top_up(self) -> None:
        assert self.transport is not None
        out = []
        now = time.perf_counter()  # one clock reading per write: the lines leave together
        while not self._exhausted and len(self.sent_at) < self.window:
            line = self.make_line(now)
            if line is None:
                self._exhausted = True
                break
            self.sent_at.append(now)
            out.append(line)
        if out:
            self.transport.write(b"".join(out))
        if self._exhausted and not self.sent_at and not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        now = time.perf_counter()
        for reply in lines:
            self.reply_s.append(now - self.sent_at.popleft())
            if reply == b"ok":
                self.ok += 1
            else:
                self.fail += 1
        self._top_up()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"push connection lost with "
                                                    f"{len(self.sent_at)} lines unanswered: {exc}"))


async def push_connect(host: str, port: int, make_line: Callable[[float], bytes | None],
                       window: int) -> LinePusher:
    loop = asyncio.get_running_loop()
    _, pusher = await asyncio.wait_for(
        loop.create_connection(lambda: LinePusher(make_line, window), host, port), 10)
    return pusher
