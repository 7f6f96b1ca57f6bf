"""Opaque, revocable session tokens with a TTL.

Only a SHA-256 digest of each token is stored, so a leaked table or Redis dump holds no usable
token. Redis keeps them when configured (shared by every process); otherwise the database does.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Protocol

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.protocol import Identity
from kefu.store.schema import tokens


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _encode(who: Identity) -> dict:
    return {"role": who.role, "openid": who.openid, "agent_id": who.agent_id, "agent_name": who.agent_name}


class TokenStore(Protocol):
    async def issue(self, who: Identity, ttl: int) -> str: ...
    async def resolve(self, token: str) -> Identity | None: ...
    async def revoke(self, token: str) -> bool: ...


class SqlTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def issue(self, who: Identity, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(tokens).where(tokens.c.expires_at < int(time.time())))
            await conn.execute(sa.insert(tokens).values(
                digest=digest(token), expires_at=int(time.time()) + ttl, **_encode(who)))
        return token

    async def resolve(self, token: str) -> Identity | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(tokens).where(
                tokens.c.digest == digest(token), tokens.c.expires_at > int(time.time())))).first()
        if r is None:
            return None
        return Identity(role=r.role, openid=r.openid, agent_id=r.agent_id, agent_name=r.agent_name,
                        expires_at=r.expires_at)

    async def revoke(self, token: str) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(sa.delete(tokens).where(tokens.c.digest == digest(token)))
            return res.rowcount > 0


class RedisTokenStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, token: str) -> str:
        return f"{self.prefix}token:{digest(token)}"

    async def issue(self, who: Identity, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        record = _encode(who) | {"expires_at": int(time.time()) + ttl}
        await self.redis.set(self._key(token), json.dumps(record), ex=ttl)
        return token

    async def resolve(self, token: str) -> Identity | None:
        raw = await self.redis.get(self._key(token))
        who = Identity(**json.loads(raw)) if raw else None
        # The key's TTL and the recorded expiry round differently; the recorded one decides.
        return who if who and (who.expires_at or 0) > time.time() else None

    async def revoke(self, token: str) -> bool:
        return bool(await self.redis.delete(self._key(token)))
