"""The status an agent sets (online / away), kept where every node can read it: a Redis hash
when Redis is configured, this process's memory otherwise. Whether the agent is connected at all
is not stored: a node subscribes `agent:<id>` while it holds one of their sockets, so the broker
knows (an agent with no socket on any node is offline, whatever they set)."""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis


class PresenceStore(Protocol):
    async def get(self, agent_id: int) -> str: ...
    async def set(self, agent_id: int, status: str) -> None: ...
    async def all(self) -> dict[int, str]: ...


class MemoryPresence:
    def __init__(self) -> None:
        self._status: dict[int, str] = {}

    async def get(self, agent_id: int) -> str:
        return self._status.get(agent_id, "online")

    async def set(self, agent_id: int, status: str) -> None:
        self._status[agent_id] = status

    async def all(self) -> dict[int, str]:
        return dict(self._status)


class RedisPresence:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.key = f"{prefix}presence"

    async def get(self, agent_id: int) -> str:
        got = await self.redis.hget(self.key, str(agent_id))
        return got.decode() if isinstance(got, bytes) else (got or "online")

    async def set(self, agent_id: int, status: str) -> None:
        await self.redis.hset(self.key, str(agent_id), status)

    async def all(self) -> dict[int, str]:
        raw = await self.redis.hgetall(self.key)
        return {int(k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
