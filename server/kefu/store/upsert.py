"""One INSERT … ON CONFLICT for MySQL and SQLite.

Creating-or-updating a row is a single statement everywhere in kefu, so concurrent writers of one
row (first logins, read marks, consents) cannot interleave a read and a write and deadlock on the
gap locks an UPDATE-then-INSERT takes on MySQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.store.schema import meta

# A new value for a column: a constant or SQL expression, or a function of the proposed row
# (MySQL's `inserted`, SQLite's `excluded`) giving one.
Update = Any | Callable[[Any], Any]


def upsert(dialect: str, table: sa.TableClause, values: dict[str, Any] | None,
           keys: Sequence[str], update: Mapping[str, Update]) -> sa.Insert:
    """Insert `values`; where a row with the same `keys` exists, set the `update` columns instead.

    With `values` None the rows are given to `execute` instead: one statement, compiled once and
    run as an executemany, however many rows a batch has (a multi-row VALUES is compiled anew
    for every batch, and that was most of a batch write's time)."""
    def resolved(proposed: Any) -> dict[str, Any]:
        return {k: (v(proposed) if callable(v) else v) for k, v in update.items()}

    if dialect == "mysql":
        my = mysql.insert(table)
        my = my if values is None else my.values(values)
        return my.on_duplicate_key_update(resolved(my.inserted))
    lite = sqlite.insert(table)
    lite = lite if values is None else lite.values(values)
    return lite.on_conflict_do_update(index_elements=list(keys), set_=resolved(lite.excluded))


def insert_ignore(table: sa.TableClause) -> sa.Insert:
    """Insert unless a row with the same key exists (then nothing happens, and no error)."""
    return sa.insert(table).prefix_with("OR IGNORE", dialect="sqlite").prefix_with("IGNORE", dialect="mysql")


async def made_once(conn: AsyncConnection, key: str, value: str) -> str:
    """The `kefu_meta` value under `key`, stored as `value` by whichever process comes first. The
    insert goes first: on MySQL a read before it fixes the transaction's snapshot, so a process whose
    insert was ignored (another committed the row meanwhile) would read nothing after it."""
    await conn.execute(insert_ignore(meta), {"k": key, "v": value})
    got = await conn.scalar(sa.select(meta.c.v).where(meta.c.k == key))
    if got is None:
        raise RuntimeError(f"kefu_meta {key!r} is missing right after its insert")
    return str(got)


def proposed(column: str) -> Callable[[Any], Any]:
    """The value the insert proposed for `column`."""
    return lambda row: row[column]


def larger(dialect: str, table: sa.TableClause, column: str) -> Callable[[Any], Any]:
    """The larger of the stored and the proposed value (marks and counters only move up)."""
    greatest = sa.func.greatest if dialect == "mysql" else sa.func.max
    return lambda row: greatest(table.c[column], row[column])


def kept_unless_null(table: sa.TableClause, column: str) -> Callable[[Any], Any]:
    """The proposed value, or the stored one where the proposal is NULL."""
    return lambda row: sa.func.coalesce(row[column], table.c[column])
