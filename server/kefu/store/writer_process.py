"""The embedded message writer's process, started by `sqlite_writer.SqliteWriter`.

It reads batches on stdin and answers on stdout, each frame a length and a pickle — it only ever
reads what its own server wrote. Batches stream in: the server sends what it accepted without
waiting for the last answer, and the writer runs every batch already waiting in its pipe in one
SQLite transaction (`batch.write_batch` over `sqlite_batch.SqliteBatch`, on the standard library's
`sqlite3`, so it starts in a tenth of a second), so a commit is never waiting for the server to
notice the one before it. It answers after the commit, once for the batches it joined, so an answer
means durable.

Commits stay in the order of the batches: once a transaction fails, every later batch is answered
`skipped` without being written, until the server, having seen the failure, says `resume` and
sends them again — a later batch never commits before an earlier one that failed.

It exits when stdin closes (its server closed it, or died, even by kill -9), after the batches in
hand; it ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the whole
process group, so that the server can still store what it accepted while it shuts down.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sqlite3
import struct
import sys
from typing import Any

from kefu.store.batch import MAX_JOINED, MessageRow, Written, write_batch
from kefu.store.sqlite_batch import PRAGMAS, SqliteBatch

FRAME = struct.Struct("!I")


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def take_frames(buffer: bytearray) -> list[Any]:
    """The whole frames at the start of `buffer`, unpickled and removed from it; a partial frame
    stays for the next read. Both ends of the pipe read with it."""
    out, at = [], 0
    while len(buffer) - at >= FRAME.size:
        (size,) = FRAME.unpack_from(buffer, at)
        if len(buffer) - at - FRAME.size < size:
            break
        out.append(pickle.loads(buffer[at + FRAME.size:at + FRAME.size + size]))
        at += FRAME.size + size
    del buffer[:at]
    return out


class Requests:
    """The frames on the request pipe, read as they come: `next_group` blocks for one, then takes
    every other one already in the pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.ended = False

    def _read(self) -> None:
        data = os.read(self.fd, 1 << 20)
        self.ended = not data
        self.buffer += data

    def next_group(self) -> list[Any]:
        """The next requests, in order; empty once the server has closed the pipe."""
        group = take_frames(self.buffer)
        while not group and not self.ended:
            self._read()
            group = take_frames(self.buffer)
        while not self.ended and select.select([self.fd], [], [], 0)[0]:
            self._read()
        return group + take_frames(self.buffer)


def _answer(error: Exception) -> Exception:
    """An exception as the server will see it: itself if it survives pickling, else its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def connect(path: str) -> sqlite3.Connection:
    """The writer's connection: it begins its own transactions, each with SQLite's write lock
    first (`BEGIN IMMEDIATE`), so a batch's lookups and its inserts are one atomic step and it
    never fails half-way on a lock upgrade."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def run(conn: sqlite3.Connection, batch: list[MessageRow], dedupe_since_ms: int | None) -> Written:
    """`write_batch` in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        written = write_batch(SqliteBatch(conn), batch, dedupe_since_ms)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return written


def _joined(writes: list[tuple[list[MessageRow], int | None]]) -> tuple[list[MessageRow], int | None]:
    """Several batches as one: their rows in order; the earliest dedupe bound (the widest window)."""
    rows = [r for batch, _ in writes for r in batch]
    bounds = [since for _, since in writes if since is not None]
    return rows, min(bounds) if bounds else None


class Writer:
    """Runs each group of requests: consecutive writes joined into one transaction, one answer
    `(kind, batches, value)` per transaction or skipped batch, in the order of the requests."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.failed = False  # a transaction failed: skip writes until the server says resume

    def group(self, requests: list[Any]) -> list[tuple[str, int, Any]]:
        answers: list[tuple[str, int, Any]] = []
        joined: list[tuple[list[MessageRow], int | None]] = []
        rows = 0

        def commit() -> None:
            nonlocal rows
            if joined:
                answers.append(self._commit(joined))
                joined.clear()
                rows = 0

        for request in requests:
            if request[0] == "resume":
                commit()
                self.failed = False
            elif self.failed:  # (only a commit sets it, and a commit empties `joined`)
                answers.append(("skipped", 1, None))
            else:
                joined.append(([MessageRow._make(r) for r in request[1]], request[2]))
                rows += len(request[1])
                if rows >= MAX_JOINED:
                    commit()
        commit()
        return answers

    def _commit(self, joined: list[tuple[list[MessageRow], int | None]]) -> tuple[str, int, Any]:
        try:
            if self.conn is None:
                self.conn = connect(self.path)
            return ("ok", len(joined), run(self.conn, *_joined(joined)))
        except Exception as e:
            self.failed = True
            return ("error", len(joined), _answer(e))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _no_wakeup_preemption() -> None:
    """Linux's batch policy: a batch sent to this process does not preempt the event loop that
    sent it. The loop has the next batch's messages to take and relay meanwhile; this process
    runs on a free core, or when the loop's time slice ends. Elsewhere (or if refused): as is."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _no_wakeup_preemption()
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the answer pipe
    requests, writer = Requests(sys.stdin.fileno()), Writer(path)
    replies.write(frame(("ready", 0, None)))
    replies.flush()
    while group := requests.next_group():
        replies.write(b"".join(frame(answer) for answer in writer.group(group)))
        replies.flush()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1])
