"""Transactions that retry what the database itself says is worth retrying.

Single-statement upserts keep kefu's own writes from deadlocking each other, but InnoDB may still
pick a transaction as a deadlock victim (1213) or time out a lock wait (1205), and SQLite may be
briefly locked; those are retried a bounded number of times, each logged with its cause. Anything
else propagates (and an unreachable database becomes `unavailable` at the edge).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 4
_MYSQL_TRANSIENT = {1205: "lock wait timeout", 1213: "deadlock"}


def transient_cause(exc: BaseException) -> str | None:
    """Why a failed transaction may succeed if run again, or None."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return None
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_TRANSIENT:
        return f"{_MYSQL_TRANSIENT[args[0]]} ({args[0]})"
    if "database is locked" in str(orig):
        return "database is locked"
    return None


async def in_transaction(engine: AsyncEngine, fn: Callable[[AsyncConnection], Awaitable[T]],
                         what: str) -> T:
    """Run `fn` in one transaction, again (bounded, with jittered backoff) on a transient failure."""
    async def once() -> T:
        async with engine.begin() as conn:
            return await fn(conn)

    return await retrying(once, what)


async def retrying(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """Run one transaction (`attempt`), again on a transient failure, as `in_transaction` does."""
    for n in range(1, ATTEMPTS + 1):
        try:
            return await attempt()
        except sa.exc.DBAPIError as e:
            cause = transient_cause(e)
            if cause is None or n == ATTEMPTS:
                raise
            log.warning("%s: %s; retrying (attempt %d of %d)", what, cause, n + 1, ATTEMPTS)
            await asyncio.sleep(0.005 * 2**n * (1 + random.random()))
    raise AssertionError("unreachable")
