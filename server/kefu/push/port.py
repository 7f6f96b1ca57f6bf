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

from kefu.config import Settings
from kefu.core.push import PushError, PushTarget
from kefu.errors import BadJson, translate
from kefu.jsonio import load_object
from kefu.push.commands import Command, parse_command
from kefu.push.service import PushService

log = logging.getLogger(__name__)

OK, FAIL = b"ok\n", b"fail\n"
MAX_CONNECTIONS = 1024
WINDOW = 64  # lines of one connection in flight at once

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
        """Read lines and answer them in order. Up to `WINDOW` pushes of one connection run at
        once (a pipelining backend's pushes then share the broker's round trips); a command that
        changes or reads state (join, leave, online, count) waits for everything before it, and
        everything after it waits for it, so a pipelined `join` then push acts in that order."""
        replies: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue(WINDOW)
        reading = asyncio.ensure_future(self._read_lines(reader, replies))
        sending = asyncio.ensure_future(self._send_replies(replies, writer))
        try:
            done, _ = await asyncio.wait({reading, sending}, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                reading.result()  # its error, if any, ends the connection
                await replies.put(None)
            await sending
        finally:
            for t in (reading, sending):
                t.cancel()
            while not replies.empty():
                pending = replies.get_nowait()
                if pending is not None:
                    pending.cancel()

    async def _read_lines(self, reader: asyncio.StreamReader,
                          replies: asyncio.Queue[asyncio.Future[bytes] | None]) -> None:
        idle = self.settings.push_idle_timeout
        first = True
        while True:
            try:
                async with asyncio.timeout(idle):  # not wait_for: it can swallow a cancellation
                    line: bytes | None = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:  # EOF: a last line without newline still counts
                if not e.partial.strip():
                    return
                line = e.partial if len(e.partial) <= self.settings.push_max_line else None
                await self._take(line, replies)
                return
            except asyncio.LimitOverrunError as e:
                async with asyncio.timeout(idle):
                    await self._skip_line(reader, e.consumed)
                line = None
            if first and line is not None and line.strip():
                first = False
                if looks_like_http(line):
                    log.warning("push port: an HTTP request arrived, closing the connection")
                    return
            await self._take(line, replies)

    async def _take(self, line: bytes | None, replies: asyncio.Queue[asyncio.Future[bytes] | None]) -> None:
        """Queue the reply to one line (None: one refused unread): a push starts at once, a
        command runs alone, in its place."""
        verdict = "over-long line" if line is None else decide(line.strip(), self.settings.push_secret)
        if isinstance(verdict, str):
            log.info("push line refused: %s", verdict)
            await replies.put(self._answered(FAIL))
        elif isinstance(verdict, PushTarget):
            await replies.put(asyncio.ensure_future(self._run(verdict)))
        else:
            await replies.join()  # after everything before it …
            await replies.put(self._answered(await self._run(verdict)))
            await replies.join()  # … and before everything after it

    async def _send_replies(self, replies: asyncio.Queue[asyncio.Future[bytes] | None],
                            writer: asyncio.StreamWriter) -> None:
        idle = self.settings.push_idle_timeout
        while (pending := await replies.get()) is not None:
            writer.write(await pending)
            replies.task_done()
            if replies.empty():
                async with asyncio.timeout(idle):  # a client that never reads is dropped
                    await writer.drain()
        replies.task_done()

    @staticmethod
    def _answered(reply: bytes) -> asyncio.Future[bytes]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(reply)
        return done

    @staticmethod
    async def _skip_line(reader: asyncio.StreamReader, consumed: int) -> None:
        """Drop an over-long line up to and including its newline, a buffer-full at a time."""
        while True:
            await reader.readexactly(consumed)
            try:
                await reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as e:
                consumed = e.consumed

    async def _run(self, verdict: Command) -> bytes:
        try:
            outcome = await self.pushes.run(verdict)
        except Exception as e:  # the edge's last resort: any failure is `fail`, logged once
            if translate(e) is None:
                log.exception("push failed")
            else:
                log.warning("push failed: %s", e)
            return FAIL
        if outcome.line is not None:
            return outcome.line
        return OK if outcome.ok else FAIL
