"""Which groups a uid belongs to, as the backend set them (`join` / `leave`): shared by every node.

A page bound to a uid joins these groups (besides those its bind token names), and stays in them
across reconnects and restarts until the backend makes the uid leave. With Redis the membership of
a uid is the set `<prefix>pgroups:<uid>` (added to by one Lua call that also enforces the limit, so
racing joins cannot pass it); the embedded engine keeps it in memory, for at most `max_uids` uids.
Pushes themselves are never stored; this is the only state the push vocabulary keeps.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from kefu.core.push import MAX_GROUPS, PushError
from kefu.errors import Unavailable

MAX_UIDS = 100_000  # the embedded store's bound

_ADD = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""


def too_many() -> PushError:
    return PushError(f"a uid belongs to at most {MAX_GROUPS} groups: make it leave one first")


class GroupStore(Protocol):
    async def of(self, uid: str) -> list[str]: ...

    async def add(self, uid: str, group: str) -> None:
        """Remember that `uid` is in `group` (idempotent); `PushError` when it has MAX_GROUPS."""
        ...

    async def remove(self, uid: str, group: str) -> None: ...


class MemoryGroups:
    def __init__(self, max_uids: int = MAX_UIDS) -> None:
        self._of: dict[str, set[str]] = {}
        self.max_uids = max_uids

    async def of(self, uid: str) -> list[str]:
        return sorted(self._of.get(uid, ()))

    async def add(self, uid: str, group: str) -> None:
        groups = self._of.get(uid)
        if groups is None:
            if len(self._of) >= self.max_uids:
                raise Unavailable(f"the embedded group store holds {self.max_uids} uids; use Redis")
            groups = self._of[uid] = set()
        if group not in groups and len(groups) >= MAX_GROUPS:
            raise too_many()
        groups.add(group)

    async def remove(self, uid: str, group: str) -> None:
        groups = self._of.get(uid)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._of[uid]


class RedisGroups:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._add = redis.register_script(_ADD)

    def _key(self, uid: str) -> str:
        return f"{self.prefix}pgroups:{uid}"

    async def of(self, uid: str) -> list[str]:
        members = await self.redis.smembers(self._key(uid))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def add(self, uid: str, group: str) -> None:
        if not int(await self._add(keys=[self._key(uid)], args=[group, MAX_GROUPS])):
            raise too_many()

    async def remove(self, uid: str, group: str) -> None:
        await self.redis.srem(self._key(uid), group)
