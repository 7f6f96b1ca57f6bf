"""Agents (hashed passwords) and mini-program users."""

from __future__ import annotations

import time

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.protocol import Identity
from kefu.store.retry import in_transaction
from kefu.store.schema import agents, users

_hasher = PasswordHasher()
# Verifying against a real hash when the name is unknown keeps login timing from revealing names.
_DUMMY_HASH = _hasher.hash("kefu-timing-equaliser")


class AgentExists(Exception):
    pass


class AccountStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_agent(self, name: str, password: str) -> int:
        row = {"name": name, "password_hash": _hasher.hash(password), "created_at": int(time.time())}
        try:
            async with self.engine.begin() as conn:
                res = await conn.execute(sa.insert(agents).values(row))
                return int(res.lastrowid)
        except sa.exc.IntegrityError:
            raise AgentExists(name) from None

    async def set_password(self, name: str, password: str) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(sa.update(agents).where(agents.c.name == name)
                                     .values(password_hash=_hasher.hash(password)))
            return res.rowcount > 0

    async def list_agents(self) -> list[dict]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(agents.c.id, agents.c.name).order_by(agents.c.id))
            return [{"id": r.id, "name": r.name} for r in rows]

    async def authenticate(self, name: str, password: str) -> Identity | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(agents).where(agents.c.name == name))).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        return Identity(role="agent", agent_id=row.id, agent_name=row.name)

    async def touch_user(self, openid: str, unionid: str | None) -> None:
        """Record a login: create the user on first sight, keep unionid and last login current.
        One upsert statement, so concurrent first logins cannot deadlock each other."""
        now = int(time.time())
        row = {"openid": openid, "unionid": unionid, "created_at": now, "last_login_at": now}
        if self.engine.dialect.name == "mysql":
            ins = mysql.insert(users).values(row)
            stmt = ins.on_duplicate_key_update(
                last_login_at=ins.inserted.last_login_at,
                unionid=sa.func.coalesce(ins.inserted.unionid, users.c.unionid))
        else:
            lite = sqlite.insert(users).values(row)
            stmt = lite.on_conflict_do_update(index_elements=["openid"], set_={
                "last_login_at": lite.excluded.last_login_at,
                "unionid": sa.func.coalesce(lite.excluded.unionid, users.c.unionid)})

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await in_transaction(self.engine, run, "recording a login")
