"""The TCP text push port (default 127.0.0.1:5678), as older Workerman push servers spoke it.

One JSON object per line in, one reply line out (`ok\\n` or `fail\\n`), in order, on a connection
the client may keep open and pipeline on. A PHP backend doing
`fwrite($client, json_encode($data)."\\n"); fread($client, 8192);` works unchanged.

`ok` means at least one socket bound to the target received the push (on any process: the
broker's subscriber count says so); `fail` means nobody was bound, or the line was refused (not
JSON, no target, a QR uid with another ticket, wrong `secret`, too long). A line with a `"kefu"`
key is another word of the push vocabulary (push/commands.py): `join` / `leave` answer `ok`,
`online` `ok` or `fail`, `count` a JSON line `{"count": n}`.

Input is bounded: a line over `KEFU_PUSH_MAX_LINE` bytes is skipped (read and dropped up to its
newline, never buffered whole) and answered `fail`; a connection that sends nothing for
`KEFU_PUSH_IDLE_TIMEOUT` seconds — including one that never finishes its line — is closed; at most
`MAX_CONNECTIONS` connections are served at once per process.

HTTP is not spoken here: a connection whose first line is an HTTP request line or header
(`GET / HTTP/1.1`, `Host: …`) is closed without a reply and nothing on it is pushed. A web page can
make a browser send a POST to 127.0.0.1:5678 with a body of JSON lines; without this check each of
those lines would be a push.

With several workers every worker listens on the port (SO_REUSEPORT: the kernel spreads the
connections); since workers share Redis, any worker reaches a page on any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections import deque

from kefu.config import Settings
from kefu.core.push import PushError, PushTarget
from kefu.errors import BadJson, translate
from kefu.jsonio import load_object
from kefu.push.commands import Command, parse_command
from kefu.push.lines import Lines
from kefu.push.service import PushService

log = logging.getLogger(__name__)

OK, FAIL = b"ok\n", b"fail\n"
MAX_CONNECTIONS = 1024
WINDOW = 64  # pushes of one connection awaiting the broker at once
READ_SIZE = 65536

# `METHOD target HTTP/x`, and `Name: value` (a header line, should the request line be cut off).
# A JSON line starts with `{` (after blanks), so neither can be mistaken for one.
_HTTP_REQUEST_LINE = re.compile(rb"[A-Za-z]{3,12} .* HTTP/\d(\.\d)?", re.DOTALL)
_HTTP_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]?.*", re.DOTALL)


def looks_like_http(line: bytes) -> bool:
    """Is this (a connection's first line) HTTP rather than a push? Pure."""
    line = line.strip()
    return bool(_HTTP_REQUEST_LINE.fullmatch(line) or _HTTP_HEADER.fullmatch(line))


def decide(line: bytes, secret: str) -> Command | str:
    """Parse one line: what to do, or the reason it fails. Pure."""
    try:
        obj = load_object(line)
    except BadJson as e:
        return e.message
    if secret:
        given = obj.get("secret")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), secret.encode()):
            return "wrong or missing secret"
    try:
        return parse_command(obj, ticket_required=True)
    except PushError as e:
        return e.message


class PushPort:
    def __init__(self, settings: Settings, pushes: PushService) -> None:
        self.settings = settings
        self.pushes = pushes
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()

    async def start(self) -> bool:
        """Listen, unless KEFU_PUSH_PORT is 0. A port that cannot be bound stops a production
        server; in dev it is logged and the rest of kefu runs (HTTP push still works)."""
        s = self.settings
        if not s.push_port:
            log.info("push port disabled (KEFU_PUSH_PORT=0)")
            return False
        try:
            self.server = await asyncio.start_server(
                self._serve, s.push_host, s.push_port, limit=s.push_max_line,
                reuse_port=True if s.workers > 1 else None)
        except OSError as e:
            if s.env == "production":
                raise
            log.error("push port %s:%s unavailable (%s); the TCP push API is off in this process",
                      s.push_host, s.push_port, e.strerror or e)
            return False
        log.info("push port listening on %s:%s%s", s.push_host, s.push_port,
                 " (lines must carry the secret)" if s.push_secret else "")
        return True

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self._clients):
            t.cancel()
        for t in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._clients) >= MAX_CONNECTIONS:
            log.warning("push port: too many connections, refusing one")
            writer.close()
            return
        self._clients.add(task)
        try:
            await self._lines(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("push port connection failed")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _lines(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read what arrives a chunk at a time, cut it into lines and answer them in order. Pushes
        start at once, up to `WINDOW` of one connection awaiting the broker (a pipelining backend's
        pushes then share its round trips); a command that changes or reads state (join, leave,
        online, count) waits until everything before it is answered, and runs before anything
        after it, so a pipelined `join` then push acts in that order."""
        idle = self.settings.push_idle_timeout
        lines = Lines(self.settings.push_max_line)
        replies = _Replies(writer, idle)
        first = True
        try:
            while True:
                async with asyncio.timeout(idle):  # not wait_for: it can swallow a cancellation
                    data = await reader.read(READ_SIZE)
                for line in lines.feed(data) if data else lines.end():
                    if first and line is not None and line.strip():
                        first = False
                        if looks_like_http(line):
                            log.warning("push port: an HTTP request arrived, closing the connection")
                            return
                    command = self._take(line, replies)
                    if command is not None:
                        await replies.settle()
                        replies.add(await self._run(command))  # in effect everywhere by now
                    elif replies.full:
                        await replies.room()
                await replies.flush()
                if not data:
                    await replies.settle()
                    return
        finally:
            replies.abandon()

    def _take(self, line: bytes | None, replies: _Replies) -> Command | None:
        """Answer one line (None: one refused unread) without waiting: a refusal or a push (which
        starts at once); a command that must run alone is returned to the caller to run."""
        verdict = "over-long line" if line is None else decide(line.strip(), self.settings.push_secret)
        if isinstance(verdict, str):
            log.info("push line refused: %s", verdict)
            replies.add(FAIL)
        elif isinstance(verdict, PushTarget):
            try:
                replies.add(self.pushes.push_soon(verdict))
            except Exception as e:
                replies.add(_failed(e))
        else:
            return verdict
        return None

    async def _run(self, verdict: Command) -> bytes:
        try:
            outcome = await self.pushes.run(verdict)
        except Exception as e:
            return _failed(e)
        if outcome.line is not None:
            return outcome.line
        return OK if outcome.ok else FAIL


def _failed(e: BaseException) -> bytes:
    """The edge's last resort: any failure is `fail`, logged once (infrastructure trouble by
    `translate` itself)."""
    err = translate(e)
    if err is None:
        log.error("push failed", exc_info=e)
    elif err is e:
        log.warning("push failed: %s", e)
    return FAIL


def _reply(counts: asyncio.Future[list[int]]) -> bytes:
    """A push's reply from its broker counts (done): `ok` if some node holds a target socket."""
    if counts.cancelled():
        return FAIL
    e = counts.exception()
    if e is not None:
        return _failed(e)
    return OK if sum(counts.result()) > 0 else FAIL


def _known(reply: bytes | asyncio.Future[list[int]]) -> bytes | None:
    """A reply's bytes if they are known now (a push's once its counts are in), else None."""
    if isinstance(reply, bytes):
        return reply
    return _reply(reply) if reply.done() else None


def _forget(counts: asyncio.Future[list[int]]) -> None:
    if not counts.cancelled():
        counts.exception()  # retrieved: a connection gone before its reply logs nothing


class _Replies:
    """One connection's replies, in line order. A reply whose line was answered at once and has
    nothing pending before it is collected and written with the others of its chunk; the rest wait
    in `pending` (a push's counts still to come, or what follows one) for a task that writes each
    as its turn comes. A client that does not read for `idle` seconds is dropped."""

    def __init__(self, writer: asyncio.StreamWriter, idle: float) -> None:
        self._writer = writer
        self._idle = idle
        self._ready: list[bytes] = []
        self._pending: deque[bytes | asyncio.Future[list[int]]] = deque()
        self._moved = asyncio.Event()  # the writer task took a reply off `pending`
        self._task: asyncio.Task[None] | None = None
        self._broken: BaseException | None = None  # why the writer task gave up (the client stopped reading)

    def add(self, reply: bytes | asyncio.Future[list[int]]) -> None:
        if self._broken is not None:
            raise self._broken
        if not self._pending and (now := _known(reply)) is not None:
            self._ready.append(now)
            return
        self._pending.append(reply)
        if self._task is None:
            self._task = asyncio.create_task(self._write_pending())

    @property
    def full(self) -> bool:
        """`WINDOW` replies are pending: `room()` before reading on."""
        return len(self._pending) >= WINDOW

    async def room(self) -> None:
        """Wait while `WINDOW` replies are pending (the client then stops being read)."""
        while self.full and self._broken is None:
            await self.flush()
            self._moved.clear()
            await self._moved.wait()

    async def flush(self) -> None:
        """Write the collected replies; wait while the client does not take them."""
        if self._ready:
            self._writer.write(b"".join(self._ready))
            self._ready.clear()
            async with asyncio.timeout(self._idle):  # a client that never reads is dropped
                await self._writer.drain()

    async def settle(self) -> None:
        """Every reply so far written (before a command runs, and at the end)."""
        await self.flush()
        while self._task is not None:
            await asyncio.shield(self._task)
        if self._broken is not None:
            raise self._broken

    def abandon(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for reply in self._pending:
            if not isinstance(reply, bytes):
                reply.add_done_callback(_forget)

    async def _write_pending(self) -> None:
        try:
            while self._pending:
                head = self._pending[0]
                if not isinstance(head, bytes) and not head.done():
                    await asyncio.wait((head,))
                out = []  # the head and every reply ready behind it: one write
                while self._pending and (now := _known(self._pending[0])) is not None:
                    self._pending.popleft()
                    out.append(now)
                self._moved.set()
                self._writer.write(b"".join(out))
                if not self._pending:
                    async with asyncio.timeout(self._idle):
                        await self._writer.drain()
        except Exception as e:  # the client does not read, or is gone: the connection ends
            self._broken = e
            self._moved.set()
            self._writer.close()
        finally:
            self._task = None
