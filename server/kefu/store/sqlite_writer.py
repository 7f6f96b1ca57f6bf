"""The embedded message writer runs in a process of its own, so that SQLite's work for a batch
shares no interpreter lock with the event loop.

On a thread of the server's process, every call into SQLite let go of the interpreter lock and
then waited for the busy event loop to hand it back: a batch that takes 4–6 ms alone took 17 ms,
and the relay's closed loop ran at that pace. In its own process (`writer_process.py`) the batch
runs on another core.

`send` writes a batch to the child's pipe at once and returns a future; the child's answers are
read as they arrive (`_Child.pipe_data_received`) and settle the futures there, in order, with no
task to wake: the embedded journal sends its next batch from that future's callback, so the
writer does not wait for a busy event loop to get round to a task. The child answers after its
commit, so a result means durable. Batches sent without waiting may share a transaction (the
child joins what waits in its pipe). After a failed transaction the child skips every later batch
(they fail with `Skipped`) until `ready` tells it to resume: the caller sends them again, in
order, so no batch commits before an earlier one that failed.

When the child dies or is abandoned (a caller's timeout or cancellation), the outcome of what it
held is unknown: the child is killed, those futures fail with `ConnectionError` (infrastructure:
the journal retries), and the next batch starts another child, where the retried batch finds its
rows if they were committed (`write_batch` skips what is stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from kefu.store.batch import MessageRow, Written
from kefu.store.engine import sqlite_path
from kefu.store.writer_process import frame, take_frames

log = logging.getLogger(__name__)
_ROOT = str(Path(__file__).resolve().parents[2])  # where `kefu` is imported from


class Skipped(ConnectionError):
    """Not written: an earlier batch failed, and the writer skips until it is told to resume."""

    def __init__(self) -> None:
        super().__init__("not written: an earlier batch failed")


class _Child(asyncio.SubprocessProtocol):
    """One writer process, and the futures of the batches it holds, in order. Its answers are
    read as they arrive (`pipe_data_received`), and each settles its futures there and then: a
    future's callbacks run in the same turn of the event loop, with no task to wake first."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.buffer = bytearray()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: deque[asyncio.Future[Written]] = deque()
        self.failed = False  # it answered an error: it skips writes until it is told to resume
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.dead = False  # exited, lost its answer pipe, or abandoned

    @property
    def alive(self) -> bool:
        return not self.dead and self.ready.done() and self.ready.exception() is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods, not the classes: cast, not isinstance.
        self.transport = cast(asyncio.SubprocessTransport, transport)
        self.stdin = cast(asyncio.WriteTransport, self.transport.get_pipe_transport(0))

    def send(self, request: Any) -> None:
        assert self.stdin is not None
        self.stdin.write(frame(request))

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd != 1 or self.dead:  # once abandoned, a late answer settles nothing
            return
        self.buffer += data
        for kind, count, value in take_frames(self.buffer):
            if kind == "ready":
                if not self.ready.done():
                    self.ready.set_result(None)
                continue
            self.failed = self.failed or kind == "error"
            for _ in range(count):
                _settle(self.waiting.popleft(), kind, value)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.kill()

    def process_exited(self) -> None:
        self.kill()
        if not self.exited.done():
            self.exited.set_result(None)

    def kill(self) -> None:
        """Gone or abandoned: what it held has an unknown outcome."""
        self.dead = True
        if self.transport is not None and self.transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()
        gone = ConnectionError("the SQLite writer process exited")
        if not self.ready.done():
            self.ready.set_exception(gone)
        waiting, self.waiting = self.waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(gone)

    @property
    def pid(self) -> int | None:
        return None if self.transport is None else self.transport.get_pid()

    @property
    def returncode(self) -> int | None:
        return None if self.transport is None else self.transport.get_returncode()


def _settle(fut: asyncio.Future[Written], kind: str, value: Any) -> None:
    if fut.done():  # its caller gave up on it (write's cancellation)
        return
    if kind == "ok":
        fut.set_result(value)
    elif kind == "skipped":
        fut.set_exception(Skipped())
    elif isinstance(value, sqlite3.Error):  # as SQLAlchemy's, like every other database call's
        fut.set_exception(sa.exc.DBAPIError.instance(None, None, value, sqlite3.Error))
    else:
        fut.set_exception(value)


class SqliteWriter:
    def __init__(self, url: str) -> None:
        """`url`: the file's synchronous URL (`sqlite:///…`, `Settings.sync_database_url`)."""
        self.url = url
        self._child: _Child | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the child now, not at the first message (and fail here if it cannot start)."""
        await self.ready()

    @property
    def running(self) -> bool:
        """A live child that writes what it is sent (not skipping after a failure)."""
        return self._child is not None and self._child.alive and not self._child.failed

    async def ready(self) -> None:
        """A live child, started if there is none; told to resume if it had failed."""
        async with self._lock:
            if self._child is None or not self._child.alive:
                if self._child is not None:
                    log.warning("the SQLite writer process exited (code %s); starting another",
                                self._child.returncode)
                self._child = await self._started()
            child = self._child
            assert child is not None
            if child.failed:
                child.failed = False
                child.send(("resume",))

    def send(self, batch: Sequence[MessageRow], dedupe_since_ms: int | None) -> asyncio.Future[Written]:
        """Write `batch` after every batch sent before it (`batch.write_batch`, in a transaction
        it may share with them); the future settles once it is committed. Needs `ready` first."""
        child = self._child
        if child is None or not self.running:
            raise ConnectionError("the SQLite writer process is not running or not resumed")
        fut: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        # Plain tuples: a pickled named tuple costs the server 1.4 µs a row, a tuple 0.3 µs.
        child.send(("write", list(map(tuple, batch)), dedupe_since_ms))
        child.waiting.append(fut)
        return fut

    async def write(self, batch: Sequence[MessageRow], dedupe_since_ms: int | None) -> Written:
        """`send` and wait. Given up (cancelled, timed out), the child is abandoned: the outcome
        of what it holds is unknown."""
        await self.ready()
        child = self._child
        fut = self.send(batch, dedupe_since_ms)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if child is not None:
                child.kill()
            raise

    def abandon(self) -> None:
        """Kill the child: what it holds fails with `ConnectionError` (a hung write's timeout)."""
        if self._child is not None:
            self._child.kill()

    async def _started(self) -> _Child:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
        _, child = await asyncio.get_running_loop().subprocess_exec(
            _Child, sys.executable, "-m", "kefu.store.writer_process", str(sqlite_path(self.url)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None, env=env)
        try:
            await child.ready  # it is ready once it ignores the group's signals
        except BaseException:
            child.kill()
            raise
        return child

    async def close(self, timeout: float = 10.0) -> None:
        """Let the child finish the batches in hand and exit (kill it after `timeout`)."""
        child, self._child = self._child, None
        if child is None or child.exited.done() or child.stdin is None:
            return
        child.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(child.exited), timeout)
        except TimeoutError:
            child.kill()
            await child.exited
        if child.transport is not None:
            child.transport.close()
