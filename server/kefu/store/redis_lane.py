"""One Redis connection that many callers share at once: commands written back to back, replies
matched to callers in the order Redis answers (it answers one connection's commands in order).

redis-py's client checks a connection out of the pool for every command, wraps it in retry and
timeout machinery and parses the reply through its own layers: 80–200 µs of CPU per `HGETALL`
on a busy node, where writing the command and handing hiredis's reply to the waiting caller costs
10 µs. A hot command that needs no transaction (a QR page's ticket lookup on every bind) goes
through a lane instead.

The connection itself is made by redis-py (the URL's host, TLS, password and database are its
business) and speaks RESP2, so replies have the classic shapes (`HGETALL`: a flat list). A lost
connection fails every command in flight with `ConnectionError` (an infrastructure error, which
the edges answer as "try again"); the next command connects again. A command unanswered within
`timeout` seconds (connecting included) raises redis-py's `TimeoutError`; its reply, if it
comes, is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from kefu.coalesce import JoinedPerIteration

READ_SIZE = 64 * 1024


def _retrieved(task: asyncio.Task[_Link]) -> None:
    if not task.cancelled():
        task.exception()  # a failed connect whose callers all gave up logs nothing at collection


class _Link:
    """One connection and the callers waiting on it, in the order their commands went out."""

    def __init__(self, conn: AbstractConnection) -> None:
        assert conn._reader is not None and conn._writer is not None  # connected: redis-py's streams
        self.conn = conn
        self.out = JoinedPerIteration(conn._writer)  # a bind's lookup joins the others of its iteration
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.task = asyncio.create_task(self._read(conn._reader))

    @property
    def usable(self) -> bool:
        return not self.task.done() and not self.out.stream.is_closing()

    def send(self, args: tuple[str | bytes | int, ...]) -> asyncio.Future[Any]:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(reply)
        # 0.5 µs, where redis-py's pack_command takes 5.4 (hiredis's stub types the tuple as of one item)
        self.out.write((hiredis.pack_command(args),))  # type: ignore[arg-type]
        return reply

    async def _read(self, stream: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(replyError=ResponseError)
        why = "the connection was closed"
        try:
            while data := await stream.read(READ_SIZE):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    waiter = self.waiting.popleft()
                    if not waiter.done():  # else its caller timed out or was cancelled
                        waiter.set_result(reply)
        except (OSError, hiredis.ProtocolError, IndexError) as e:  # IndexError: a reply nobody asked for
            why = repr(e)
        finally:
            self.fail(ConnectionError(f"redis lane: {why}"))
            with contextlib.suppress(Exception):
                await self.conn.disconnect()

    def fail(self, why: Exception) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(why)


class RedisLane:
    def __init__(self, redis: Redis, timeout: float = 5.0) -> None:
        self._pool = redis.connection_pool
        self.timeout = timeout
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    async def execute(self, *args: str | bytes | int) -> Any:
        """Send one command and return its reply (a `ResponseError` reply is raised)."""
        try:
            async with asyncio.timeout(self.timeout):
                link = self._link
                if link is None or not link.usable:
                    link = await self._connected()
                result = await link.send(args)
        except TimeoutError:  # asyncio's: redis-py's is a RedisError, which the edges translate
            raise RedisTimeout(f"redis lane: no reply within {self.timeout} s") from None
        except OSError as e:
            raise ConnectionError(f"redis lane: {e!r}") from None
        if isinstance(result, ResponseError):
            raise result
        return result

    async def _connected(self) -> _Link:
        """Connect once for everyone waiting (one who gives up does not stop it for the others)."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect())
            self._connecting.add_done_callback(_retrieved)
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Link:
        conn: AbstractConnection = self._pool.connection_class(
            **{**self._pool.connection_kwargs, "protocol": 2})
        try:
            await conn.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect()
            raise
        self._link = _Link(conn)
        return self._link

    async def close(self) -> None:
        reading = self._link.task if self._link else None
        tasks: list[asyncio.Task[Any]] = [t for t in (self._connecting, reading) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._link = self._connecting = None
