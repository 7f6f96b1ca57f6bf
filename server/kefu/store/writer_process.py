"""The embedded message writer's process, started by `sqlite_writer.SqliteWriter`.

It reads batches on stdin, runs each in one SQLite transaction (`messages.write_batch` over
`sqlite_batch.SqliteBatch`) and answers on stdout with what the write did or the exception it
raised, each frame a length and a pickle — it only ever reads what its own server wrote. It
answers after the commit, so an answer means durable. It exits when stdin closes (its server
closed it, or died, even by kill -9), after the batch in hand; it ignores SIGINT and SIGTERM,
which a terminal or a service manager sends to the whole process group, so that the server can
still store what it accepted while it shuts down.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
from typing import IO, Any

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


def main(url: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the answer pipe

    from kefu.store.engine import writer_engine
    from kefu.store.messages import write_batch
    from kefu.store.sqlite_batch import SqliteBatch

    engine = writer_engine(url)
    replies.write(frame(("ready", None)))
    replies.flush()
    while (request := _read(requests)) is not None:
        batch, dedupe_since_ms = request
        try:
            with engine.begin() as conn:
                answer: tuple[str, Any] = ("ok", write_batch(SqliteBatch(conn), batch, dedupe_since_ms))
        except Exception as e:
            answer = _answer(e)
        replies.write(frame(answer))
        replies.flush()
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1])
