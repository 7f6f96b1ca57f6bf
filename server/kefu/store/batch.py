"""The batch write's one algorithm and its values, with nothing but the standard library: the
embedded writer's process (`writer_process.py`) imports this and `sqlite_batch.py` only, and starts
in a tenth of the time SQLAlchemy takes to import.

A batch is a list of `MessageRow`s — the `messages` row as stored, plus whether the message moves
its conversation — run inside the caller's transaction over a `BatchStatements`: Core for MySQL
(`messages._CoreBatch`), raw SQL for SQLite (`sqlite_batch.SqliteBatch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class MessageRow(NamedTuple):
    id: int
    openid: str
    sender: str
    agent_id: int | None
    agent_name: str | None
    sender_key: str
    cmid: str | None
    body: str
    ts: int
    delivered: bool
    kind: str
    meta: str | None  # JSON text
    for_user: bool  # a chat message (not a note or status event): it moves its conversation


MESSAGE_COLUMNS = MessageRow._fields[:-1]  # `for_user` is not stored
MAX_JOINED = 5000  # rows in one transaction at most when batches are joined: a backlog goes in steps


@dataclass(frozen=True, slots=True)
class Earlier:
    """A message already stored under a sender's cmid: what a duplicate is acked with."""

    id: int
    ts: int
    delivered: bool


@dataclass(slots=True)
class Written:
    """What a batch write did: the duplicates it found (embedded dedupe) and the colliding ids."""

    dups: dict[tuple[str, str], Earlier] = field(default_factory=dict)
    collisions: list[int] = field(default_factory=list)


class BatchStatements(Protocol):
    """What a batch write asks of the database, in one transaction; results are row tuples."""

    def stored(self, ids: Sequence[int]) -> Iterable[Any]:
        """(id, sender_key, cmid, body) of those of `ids` already stored."""
        ...

    def earlier(self, keys: Sequence[tuple[str, str]], since_ms: int) -> Iterable[Any]:
        """(sender_key, cmid, id, ts, delivered) of messages under these (sender key, cmid) since then."""
        ...

    def insert(self, rows: Sequence[MessageRow]) -> None: ...

    def latest(self, rows: Sequence[tuple[str, int]]) -> None:
        """Raise each (openid, id) conversation's last_message_id to the id (never lower it)."""
        ...


def write_batch(sql: BatchStatements, batch: Sequence[MessageRow], dedupe_since_ms: int | None) -> Written:
    """Inside the caller's transaction: skip what is already stored (a replay), report colliding
    ids and (with `dedupe_since_ms`) earlier messages under a sender's cmid, insert the rest and
    raise each conversation's latest id."""
    out = Written()
    by_id = {r.id: r for r in batch}
    for msg_id, sender_key, cmid, body in sql.stored(list(by_id)):
        r = by_id.pop(msg_id)
        if (sender_key, cmid, body) != (r.sender_key, r.cmid, r.body):
            out.collisions.append(msg_id)
    if dedupe_since_ms is not None:
        keys = {(r.sender_key, r.cmid) for r in by_id.values() if r.cmid is not None}
        if keys:
            for sender_key, cmid, msg_id, ts, delivered in sql.earlier(sorted(keys), dedupe_since_ms):
                key = (sender_key, cmid)
                if key not in out.dups or msg_id < out.dups[key].id:
                    out.dups[key] = Earlier(msg_id, ts, bool(delivered))
            for i, r in list(by_id.items()):
                if (r.sender_key, r.cmid) in out.dups:
                    del by_id[i]
    if not by_id:
        return out
    sql.insert(list(by_id.values()))
    # A conversation's latest activity is its chat: notes and status events do not move it.
    last: dict[str, int] = {}
    for r in by_id.values():
        if r.for_user:
            last[r.openid] = max(last.get(r.openid, 0), r.id)
    # Sorted, so two writers lock conversation rows in the same order.
    if last:
        sql.latest([(o, last[o]) for o in sorted(last)])
    return out
