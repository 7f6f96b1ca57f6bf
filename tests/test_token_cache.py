"""The node's memory of users' tokens (store/token_cache.py), driven without a server."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from kefu.protocol import Identity
from kefu.store.token_cache import CachedTokens
from kefu.store.tokens import digest


class Store:
    """A token store that counts its lookups and can hold one back."""

    def __init__(self) -> None:
        self.who: dict[str, Identity] = {}
        self.lookups = 0
        self.gate: asyncio.Event | None = None

    async def issue(self, who: Identity, ttl: int) -> str:
        token = f"t{len(self.who)}"
        self.who[digest(token)] = dataclasses.replace(who, expires_at=int(time.time()) + ttl)
        return token

    async def resolve(self, token: str) -> Identity | None:
        return await self.resolve_digest(digest(token))

    async def resolve_digest(self, token_digest: str) -> Identity | None:
        self.lookups += 1
        found = self.who.get(token_digest)
        if self.gate is not None:
            await self.gate.wait()
        return found

    async def revoke(self, token: str) -> bool:
        return self.who.pop(digest(token), None) is not None

    async def revoke_agent(self, agent_id: int) -> int:
        return 0


USER = Identity(role="user", openid="o_1")


def cached(store: Store, **kw: float) -> tuple[CachedTokens, list[str]]:
    announced: list[str] = []

    async def announce(d: str) -> None:
        announced.append(d)

    return CachedTokens(store, announce, **kw), announced  # type: ignore[arg-type]


async def test_a_user_token_is_remembered_until_revoked_and_the_revocation_announced():
    store = Store()
    tokens, announced = cached(store)
    token = await tokens.issue(USER, 3600)
    assert await tokens.resolve(token) == USER and store.lookups == 0, "the issuing node knows it"
    assert await tokens.revoke(token) is True
    assert announced == [digest(token)]
    assert await tokens.resolve(token) is None and store.lookups == 1

    other = await store.issue(USER, 3600)  # issued by another node
    assert await tokens.resolve(other) == USER and await tokens.resolve(other) == USER
    assert store.lookups == 2, "asked once, then remembered"
    tokens.forget(digest(other))  # another node's announcement
    await tokens.resolve(other)
    assert store.lookups == 3


async def test_agents_are_not_remembered_and_nothing_outlives_max_age():
    store = Store()
    tokens, _ = cached(store, max_age=0.05)
    agent = await tokens.issue(Identity(role="agent", agent_id=1, agent_name="ann"), 3600)
    await tokens.resolve(agent)
    assert store.lookups == 1
    user = await tokens.issue(USER, 3600)
    await asyncio.sleep(0.06)
    await tokens.resolve(user)
    assert store.lookups == 2
    tokens.forget_all()
    await tokens.resolve(user)
    assert store.lookups == 3


async def test_an_answer_that_began_before_a_revocation_is_not_remembered():
    store = Store()
    tokens, _ = cached(store)
    token = await store.issue(USER, 3600)
    store.gate = asyncio.Event()
    resolving = asyncio.create_task(tokens.resolve(token))
    await asyncio.sleep(0)
    tokens.forget(digest(token))  # the announcement arrives while the store is being asked
    store.gate.set()
    assert await resolving == USER  # the store answered from before the revocation…
    await tokens.resolve(token)
    assert store.lookups == 2, "… but that answer was not remembered"


async def test_the_memory_is_bounded():
    store = Store()
    tokens, _ = cached(store, max_entries=3)
    issued = [await tokens.issue(USER, 3600) for _ in range(5)]
    for t in issued[2:]:
        await tokens.resolve(t)
    assert store.lookups == 0
    await tokens.resolve(issued[0])
    assert store.lookups == 1, "the oldest went first"
