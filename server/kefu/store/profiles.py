"""Customer profiles: what a backend says about an openid (name, avatar URL, phone, tags,
attributes such as an order number), and the nickname and avatar the user set in the mini-program.

A backend's fields and the user's are kept apart, so neither overwrites the other; the console
shows the backend's name and avatar when there are any.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu import jsonio
from kefu.store.binary import binary
from kefu.store.retry import in_transaction
from kefu.store.schema import avatars, profiles
from kefu.store.upsert import proposed, upsert

BACKEND_FIELDS = ("name", "avatar", "phone", "tags", "attrs")
USER_FIELDS = ("nickname", "user_avatar")


def _to_json(r: sa.Row | None, openid: str) -> dict[str, Any]:
    if r is None:
        return {"openid": openid, "name": None, "avatar": None, "phone": None, "tags": [], "attrs": {},
                "nickname": None, "user_avatar": None, "updated_at": 0}
    return {"openid": openid, "name": r.name, "avatar": r.avatar, "phone": r.phone,
            "tags": jsonio.loads(r.tags) if r.tags else [], "attrs": jsonio.loads(r.attrs) if r.attrs else {},
            "nickname": r.nickname, "user_avatar": r.user_avatar, "updated_at": int(r.updated_at or 0)}


class ProfileStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, openid: str) -> dict[str, Any]:
        async with self.engine.connect() as c:
            row = (await c.execute(sa.select(profiles).where(profiles.c.openid == openid))).first()
        return _to_json(row, openid)

    async def update(self, openid: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Set the given fields (None clears one); the others stay. One upsert statement."""
        values = {k: (jsonio.dumps(v) if k in ("tags", "attrs") and v is not None else v)
                  for k, v in fields.items()}
        values["updated_at"] = int(time.time() * 1000)
        row = {"openid": openid, **values}
        stmt = upsert(self.engine.dialect.name, profiles, row, ["openid"],
                      {k: proposed(k) for k in values})

        async def run(c: AsyncConnection) -> None:
            await c.execute(stmt)

        await in_transaction(self.engine, run, "saving a profile")
        return await self.get(openid)

    async def put_avatar(self, openid: str, mime: str, data: bytes) -> int:
        now = int(time.time() * 1000)

        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.delete(avatars).where(avatars.c.openid == openid))
            await c.execute(sa.insert(avatars).values(openid=openid, mime=mime, updated_at=now,
                                                      data=binary(self.engine.dialect.name, data)))

        await in_transaction(self.engine, run, "saving an avatar")
        return now

    async def avatar(self, openid: str) -> tuple[str, bytes] | None:
        async with self.engine.connect() as c:
            row = (await c.execute(sa.select(avatars.c.mime, avatars.c.data)
                                   .where(avatars.c.openid == openid))).first()
        return (row.mime, bytes(row.data)) if row else None
