"""The team's shared canned replies: a shortcut (what the agent types after `/`) and the text."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.store.retry import in_transaction
from kefu.store.schema import canned_replies as canned


class ShortcutTaken(Exception):
    pass


def _json(r: sa.Row) -> dict[str, Any]:
    return {"id": int(r.id), "shortcut": r.shortcut, "body": r.body, "updated_at": int(r.updated_at)}


class CannedStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as c:
            return [_json(r) for r in await c.execute(sa.select(canned).order_by(canned.c.shortcut))]

    async def get(self, reply_id: int) -> dict[str, Any] | None:
        async with self.engine.connect() as c:
            row = (await c.execute(sa.select(canned).where(canned.c.id == reply_id))).first()
        return _json(row) if row else None

    async def create(self, shortcut: str, body: str) -> dict[str, Any]:
        now = int(time.time() * 1000)
        try:
            async with self.engine.begin() as c:
                res = await c.execute(sa.insert(canned).values(shortcut=shortcut, body=body, created_at=now,
                                                               updated_at=now))
                new_id = int(res.lastrowid)
        except sa.exc.IntegrityError:
            raise ShortcutTaken(shortcut) from None
        got = await self.get(new_id)
        assert got is not None
        return got

    async def update(self, reply_id: int, fields: dict[str, str]) -> dict[str, Any] | None:
        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.update(canned).where(canned.c.id == reply_id)
                            .values(updated_at=int(time.time() * 1000), **fields))
        try:
            await in_transaction(self.engine, run, "saving a canned reply")
        except sa.exc.IntegrityError:
            raise ShortcutTaken(fields.get("shortcut", "")) from None
        return await self.get(reply_id)

    async def delete(self, reply_id: int) -> bool:
        async with self.engine.begin() as c:
            res = await c.execute(sa.delete(canned).where(canned.c.id == reply_id))
            return res.rowcount > 0
