"""The embedded message writer's process, started by `sqlite_writer.SqliteWriter`.

It reads batches on stdin, runs each in one SQLite transaction (`batch.write_batch` over
`sqlite_batch.SqliteBatch`, on the standard library's `sqlite3`, so it starts in a tenth of a
second) and answers on stdout with what the write did or the exception it raised, each frame a
length and a pickle — it only ever reads what its own server wrote. It answers after the commit,
so an answer means durable. It exits when stdin closes (its server closed it, or died, even by
kill -9), after the batch in hand; it ignores SIGINT and SIGTERM, which a terminal or a service
manager sends to the whole process group, so that the server can still store what it accepted
while it shuts down.
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
import struct
import sys
from typing import IO, Any

from kefu.store.batch import MessageRow, Written, write_batch
from kefu.store.sqlite_batch import PRAGMAS, SqliteBatch

FRAME = struct.Struct("!I")


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def _read(stream: IO[bytes]) -> Any | None:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    return pickle.loads(body) if len(body) == size else None


def _answer(error: Exception) -> tuple[str, Exception]:
    """An exception as the server will see it: itself if it survives pickling, else its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return ("error", error)
    except Exception:
        return ("error", RuntimeError(f"{type(error).__name__}: {error}"))


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


def main(path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the answer pipe
    conn: sqlite3.Connection | None = None
    replies.write(frame(("ready", None)))
    replies.flush()
    while (request := _read(requests)) is not None:
        try:
            if conn is None:
                conn = connect(path)
            answer: tuple[str, Any] = ("ok", run(conn, *request))
        except Exception as e:
            answer = _answer(e)
        replies.write(frame(answer))
        replies.flush()
    if conn is not None:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
