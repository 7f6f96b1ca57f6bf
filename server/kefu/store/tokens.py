"""Opaque, revocable session tokens with a TTL.

Only a SHA-256 digest of each token is stored, so a leaked table or Redis dump holds no usable
token. Redis keeps them when configured (shared by every process); otherwise the database does.
Every token of one agent can be revoked at once (a password change, a disabled or deleted
account): the database finds them by `agent_id`; Redis keeps a set of each agent's token digests
(`<prefix>agenttokens:<id>`). `AgentCheckedTokens` adds the last word: an agent token resolves only
while its account exists and is enabled, so a revocation that never happened (a crash between the
account change and the revoke) still cannot let a disabled agent in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import time
from typing import Protocol

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.errors import is_infrastructure
from kefu.protocol import Identity
from kefu.store.accounts import AccountStore
from kefu.store.schema import tokens

log = logging.getLogger(__name__)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _encode(who: Identity) -> dict:
    return {"role": who.role, "openid": who.openid, "agent_id": who.agent_id,
            "agent_name": who.agent_name, "admin": who.admin}


class TokenStore(Protocol):
    async def issue(self, who: Identity, ttl: int) -> str: ...
    async def resolve(self, token: str) -> Identity | None: ...
    async def resolve_digest(self, token_digest: str) -> Identity | None: ...
    async def revoke(self, token: str) -> bool: ...

    async def revoke_agent(self, agent_id: int) -> int:
        """Revoke every token of one agent; how many there were."""
        ...


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
        return await self.resolve_digest(digest(token))

    async def resolve_digest(self, token_digest: str) -> Identity | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(tokens).where(
                tokens.c.digest == token_digest, tokens.c.expires_at > int(time.time())))).first()
        if r is None:
            return None
        return Identity(role=r.role, openid=r.openid, agent_id=r.agent_id, agent_name=r.agent_name,
                        expires_at=r.expires_at, admin=bool(r.admin))

    async def revoke(self, token: str) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(sa.delete(tokens).where(tokens.c.digest == digest(token)))
            return res.rowcount > 0

    async def revoke_agent(self, agent_id: int) -> int:
        async with self.engine.begin() as conn:
            res = await conn.execute(sa.delete(tokens).where(
                tokens.c.role == "agent", tokens.c.agent_id == agent_id))
            return int(res.rowcount)


# KEYS: the agent's digest set. ARGV: the token key prefix. Deletes every token in the set, then it.
_REVOKE_AGENT = """
local n = 0
for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. d)
end
redis.call('DEL', KEYS[1])
return n
"""


class RedisTokenStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._revoke_agent = redis.register_script(_REVOKE_AGENT)

    def _key(self, token_digest: str) -> str:
        return f"{self.prefix}token:{token_digest}"

    def _agent_set(self, agent_id: int) -> str:
        return f"{self.prefix}agenttokens:{agent_id}"

    async def issue(self, who: Identity, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        d = digest(token)
        record = _encode(who) | {"expires_at": int(time.time()) + ttl}
        # One transaction: a concurrent revoke_agent sees the token in the set, or not at all.
        async with self.redis.pipeline(transaction=True) as p:
            p.set(self._key(d), json.dumps(record), ex=ttl)
            if who.role == "agent" and who.agent_id is not None:
                p.sadd(self._agent_set(who.agent_id), d)
                p.expire(self._agent_set(who.agent_id), ttl)  # agent tokens share one TTL
            await p.execute()
        return token

    async def resolve(self, token: str) -> Identity | None:
        return await self.resolve_digest(digest(token))

    async def resolve_digest(self, token_digest: str) -> Identity | None:
        raw = await self.redis.get(self._key(token_digest))
        who = Identity(**json.loads(raw)) if raw else None
        # The key's TTL and the recorded expiry round differently; the recorded one decides.
        return who if who and (who.expires_at or 0) > time.time() else None

    async def revoke(self, token: str) -> bool:
        d = digest(token)
        async with self.redis.pipeline(transaction=True) as p:  # GETDEL, before Redis 6.2 too
            p.get(self._key(d))
            p.delete(self._key(d))
            raw, _ = await p.execute()
        if raw is None:
            return False
        agent_id = json.loads(raw).get("agent_id")
        if agent_id is not None:
            await self.redis.srem(self._agent_set(int(agent_id)), d)
        return True

    async def revoke_agent(self, agent_id: int) -> int:
        return int(await self._revoke_agent(keys=[self._agent_set(agent_id)],
                                            args=[f"{self.prefix}token:"]))


class AgentCheckedTokens:
    """A token store whose agent tokens resolve only while the account exists and is enabled,
    with the account's current name and admin flag (demoting an admin takes effect at once).
    While the database cannot be reached, a token the store still holds is taken as it is."""

    def __init__(self, inner: TokenStore, accounts: AccountStore) -> None:
        self.inner = inner
        self.accounts = accounts

    async def issue(self, who: Identity, ttl: int) -> str:
        return await self.inner.issue(who, ttl)

    async def resolve(self, token: str) -> Identity | None:
        return await self.resolve_digest(digest(token))

    async def resolve_digest(self, token_digest: str) -> Identity | None:
        who = await self.inner.resolve_digest(token_digest)
        if who is None or who.role != "agent" or who.agent_id is None:
            return who
        try:
            account = await self.accounts.agent(who.agent_id)
        except Exception as e:
            if not is_infrastructure(e):
                raise
            # The database is down but the token store answered (Redis): let the token vouch
            # alone until it is back, so agents keep working through a MySQL outage. Revocation
            # deleted a disabled agent's tokens already; this check is the second line.
            log.debug("account check skipped for agent %s: %s", who.agent_id, e)
            return who
        if account is None or account.disabled:
            return None
        return dataclasses.replace(who, agent_name=account.name, admin=account.is_admin)

    async def revoke(self, token: str) -> bool:
        return await self.inner.revoke(token)

    async def revoke_agent(self, agent_id: int) -> int:
        return await self.inner.revoke_agent(agent_id)
