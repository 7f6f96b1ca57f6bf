"""The embedded message writer runs in a process of its own, so that SQLite's work for a batch
shares no interpreter lock with the event loop.

On a thread of the server's process, every call into SQLite let go of the interpreter lock and
then waited for the busy event loop to hand it back: a batch that takes 4–6 ms alone took 17 ms,
and the relay's closed loop ran at that pace. In its own process (`writer_process.py`) the batch
runs on another core. A batch is one exchange over the child's stdin and stdout, read by the event
loop itself — no helper thread, which would wait for the lock in turn.

The child answers after its commit, so an answer means durable, as before. When the child dies or
an exchange is abandoned (the caller's timeout or cancellation), that batch's outcome is unknown:
the child is killed, the caller gets `ConnectionError` (infrastructure: the journal retries), and
the next exchange starts another child, where the retried batch finds its rows if they were
committed (`write_batch` skips what is stored).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kefu.store.batch import MessageRow, Written
from kefu.store.engine import sqlite_path
from kefu.store.writer_process import FRAME, frame

log = logging.getLogger(__name__)
_ROOT = str(Path(__file__).resolve().parents[2])  # where `kefu` is imported from


class SqliteWriter:
    def __init__(self, url: str) -> None:
        """`url`: the file's synchronous URL (`sqlite:///…`, `Settings.sync_database_url`)."""
        self.url = url
        self._child: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the child now, not at the first message (and fail here if it cannot start)."""
        async with self._lock:
            await self._running()

    async def write(self, batch: Sequence[MessageRow], dedupe_since_ms: int | None) -> Written:
        """`batch.write_batch` in one transaction in the writer's process. SQLite's errors are
        raised as SQLAlchemy's, like those of every other database call."""
        async with self._lock:
            child = await self._running()
            kind, value = await self._exchange(child, frame((batch, dedupe_since_ms)))
        if kind == "ok":
            return value
        if isinstance(value, sqlite3.Error):
            raise sa.exc.DBAPIError.instance(None, None, value, sqlite3.Error) from value
        raise value

    async def _running(self) -> asyncio.subprocess.Process:
        if self._child is None or self._child.returncode is not None:
            if self._child is not None:
                log.warning("the SQLite writer process exited (code %s); starting another",
                            self._child.returncode)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
            child = self._child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kefu.store.writer_process", str(sqlite_path(self.url)),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
            await self._exchange(child, None)  # it is ready once it ignores the group's signals
        return self._child

    async def _exchange(self, child: asyncio.subprocess.Process, request: bytes | None) -> tuple[str, Any]:
        """Send `request` (if any) and read one answer; any failure leaves the child unusable."""
        assert child.stdin is not None and child.stdout is not None
        try:
            if request is not None:
                child.stdin.write(request)
                await child.stdin.drain()
            (size,) = FRAME.unpack(await child.stdout.readexactly(FRAME.size))
            answer: tuple[str, Any] = pickle.loads(await child.stdout.readexactly(size))
            return answer
        except BaseException as e:
            self._abandon(child)
            if isinstance(e, (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)):
                raise ConnectionError("the SQLite writer process exited") from e
            raise

    def _abandon(self, child: asyncio.subprocess.Process) -> None:
        """The exchange's outcome is unknown: no later answer may be taken for another batch's."""
        if child.returncode is None:
            child.kill()
        self._child = None

    async def close(self, timeout: float = 10.0) -> None:
        """Let the child finish the batch in hand and exit (kill it after `timeout`)."""
        child, self._child = self._child, None
        if child is None or child.returncode is not None:
            return
        assert child.stdin is not None
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), timeout)
        except TimeoutError:
            child.kill()
            await child.wait()
