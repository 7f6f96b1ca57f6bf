"""Agents (hashed passwords, admin and disabled flags) and mini-program users.

Argon2 is slow on purpose (tens of milliseconds of CPU and 64 MiB per hash), so hashing and
verifying run in worker threads, a few at a time (`PasswordHashing`): the event loop keeps serving
every socket while logins are checked, and a flood of logins waits in a bounded queue instead of
taking all memory and CPU.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.errors import RateLimited
from kefu.protocol import Identity
from kefu.store.retry import in_transaction
from kefu.store.schema import agents, users
from kefu.store.upsert import kept_unless_null, proposed, upsert

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against a real hash when the name is unknown keeps login timing from revealing
    names. Made at the first use, in a hashing thread: at import it cost every process (a server's
    start, each `kefu` command) 150 ms of argon2."""
    return _hasher.hash("kefu-timing-equaliser")


class AgentExists(Exception):
    pass


@dataclass(frozen=True, slots=True)
class AgentAccount:
    id: int
    name: str
    is_admin: bool
    disabled: bool
    created_at: int
    password_hash: str = field(default="", repr=False, compare=False)

    @property
    def identity(self) -> Identity:
        return Identity(role="agent", agent_id=self.id, agent_name=self.name, admin=self.is_admin)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "is_admin": self.is_admin,
                "disabled": self.disabled, "created_at": self.created_at}


def _verify(password_hash: str | None, password: str) -> bool:
    """`password_hash` None: an unknown name, checked against the dummy hash (always False)."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class PasswordHashing:
    """Argon2 off the event loop: at most `slots` hashes at once, at most `queue` waiting (beyond
    that, `RateLimited`: the client may retry in a second)."""

    def __init__(self, slots: int = 2, queue: int = 64) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._room = slots + queue
        self._inside = 0

    async def _run(self, fn, *args):
        if self._inside >= self._room:
            raise RateLimited("too many logins at once, retry shortly", retry_after=1)
        self._inside += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(fn, *args)
        finally:
            self._inside -= 1

    async def hash(self, password: str) -> str:
        return await self._run(_hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self._run(_verify, password_hash, password)


def _account(row: sa.Row) -> AgentAccount:
    return AgentAccount(id=int(row.id), name=row.name, is_admin=bool(row.is_admin),
                        disabled=bool(row.disabled), created_at=int(row.created_at),
                        password_hash=row.password_hash)


class AccountStore:
    def __init__(self, engine: AsyncEngine, hashing: PasswordHashing | None = None) -> None:
        self.engine = engine
        self.hashing = hashing or PasswordHashing()

    # ---- agents ---------------------------------------------------------------------------

    async def create_agent(self, name: str, password: str, *, admin: bool = False) -> int:
        row = {"name": name, "password_hash": await self.hashing.hash(password),
               "created_at": int(time.time()), "is_admin": admin, "disabled": False}
        try:
            async with self.engine.begin() as conn:
                res = await conn.execute(sa.insert(agents).values(row))
                return int(res.lastrowid)
        except sa.exc.IntegrityError:
            raise AgentExists(name) from None

    async def agent(self, agent_id: int) -> AgentAccount | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(agents).where(agents.c.id == agent_id))).first()
        return _account(row) if row else None

    async def agent_named(self, name: str) -> AgentAccount | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(agents).where(agents.c.name == name))).first()
        return _account(row) if row else None

    async def list_agents(self) -> list[AgentAccount]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(agents).order_by(agents.c.id))
            return [_account(r) for r in rows]

    async def set_password(self, agent_id: int, password: str) -> bool:
        new_hash = await self.hashing.hash(password)
        return await self._update(agent_id, password_hash=new_hash)

    async def set_disabled(self, agent_id: int, disabled: bool) -> bool:
        return await self._update(agent_id, disabled=disabled)

    async def set_admin(self, agent_id: int, admin: bool) -> bool:
        return await self._update(agent_id, is_admin=admin)

    async def delete_agent(self, agent_id: int) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(sa.delete(agents).where(agents.c.id == agent_id))
            return res.rowcount > 0

    async def _update(self, agent_id: int, **values: object) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(sa.update(agents).where(agents.c.id == agent_id).values(**values))
            # MySQL counts changed rows: setting a flag to what it was is "0 rows", yet it exists.
            if res.rowcount > 0:
                return True
            found = await conn.execute(sa.select(agents.c.id).where(agents.c.id == agent_id))
            return found.first() is not None

    async def authenticate(self, name: str, password: str) -> AgentAccount | None:
        """The account if `password` is its password (disabled ones included: the caller says
        why it refuses), else None. An unknown name costs the same hash as a known one."""
        account = await self.agent_named(name)
        ok = await self.hashing.verify(account.password_hash if account else None, password)
        return account if ok and account is not None else None

    async def still_valid(self, account: AgentAccount) -> bool:
        """Whether `account` still exists, enabled, with the password it was authenticated with:
        a login that raced a password change or a disable must not keep its token."""
        now = await self.agent(account.id)
        return now is not None and not now.disabled and now.password_hash == account.password_hash

    # ---- users ----------------------------------------------------------------------------

    async def touch_user(self, openid: str, unionid: str | None) -> None:
        """Record a login: create the user on first sight, keep unionid and last login current.
        One upsert statement, so concurrent first logins cannot deadlock each other."""
        now = int(time.time())
        row = {"openid": openid, "unionid": unionid, "created_at": now, "last_login_at": now}
        stmt = upsert(self.engine.dialect.name, users, row, ["openid"], {
            "last_login_at": proposed("last_login_at"), "unionid": kept_unless_null(users, "unionid")})

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await in_transaction(self.engine, run, "recording a login")
