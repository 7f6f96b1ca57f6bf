"""How many page sockets are in a group, over every node.

Pub/sub's subscriber count says how many *nodes* hold a group, not how many sockets, so each node
writes its own count where every node can read it: the hash `<prefix>gsockets:<group>` maps node
id → sockets of that group on that node. A node writes a group's count shortly after it changes
(changes are batched for `FLUSH_DELAY` seconds into one pipeline) and rewrites all of its counts
every `REFRESH` seconds, along with its liveness key `<prefix>pnode:<node id>` (expires after
`NODE_TTL`). Reading sums the fields of live nodes and drops those of nodes whose key expired, so
a node that was killed stops counting within `NODE_TTL` seconds; one that lost Redis's data writes
everything again at its next refresh. Without Redis (one process) the hub's own sets are the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kefu.core.push import group_channel

log = logging.getLogger(__name__)

FLUSH_DELAY = 0.05
REFRESH = 10.0
NODE_TTL = 30
GROUP_PREFIX = group_channel("")

# KEYS[1] the group's hash; ARGV[1] the liveness key prefix. Sum the live nodes, drop the dead.
_COUNT = """
local h = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #h, 2 do
  if redis.call('EXISTS', ARGV[1] .. h[i]) == 1 then n = n + tonumber(h[i + 1])
  else redis.call('HDEL', KEYS[1], h[i]) end
end
return n
"""

LocalChannels = Callable[[], Mapping[str, set]]


class GroupCounts(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def touch(self, groups: Iterable[str]) -> None:
        """These groups' local socket counts may have changed."""
        ...

    async def count(self, group: str) -> int: ...

    async def flush(self) -> None:
        """This node's changed counts written now (before a group change is answered)."""
        ...


class LocalCounts:
    def __init__(self, channels: LocalChannels) -> None:
        self._channels = channels

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def touch(self, groups: Iterable[str]) -> None:
        pass

    async def count(self, group: str) -> int:
        return len(self._channels().get(group_channel(group), ()))

    async def flush(self) -> None:
        pass


class RedisCounts:
    def __init__(self, redis: Redis, prefix: str, channels: LocalChannels, node_id: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.node_id = node_id  # the node's own (`Node.node_id`)
        self._channels = channels
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._count = redis.register_script(_COUNT)
        self._lock = asyncio.Lock()

    def _key(self, group: str) -> str:
        return f"{self.prefix}gsockets:{group}"

    def _local(self) -> dict[str, int]:
        return {ch[len(GROUP_PREFIX):]: len(conns) for ch, conns in self._channels().items()
                if ch.startswith(GROUP_PREFIX) and conns}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):  # a clean stop: stop counting at once
            await self.redis.delete(f"{self.prefix}pnode:{self.node_id}")

    def touch(self, groups: Iterable[str]) -> None:
        self._dirty.update(groups)
        if self._dirty:
            self._wake.set()

    async def count(self, group: str) -> int:
        await self.flush()  # this node's own changes first
        return int(await self._count(keys=[self._key(group)], args=[f"{self.prefix}pnode:"]))

    async def flush(self, everything: bool = False) -> None:
        async with self._lock:
            local = self._local()
            groups = set(local) | self._dirty if everything else set(self._dirty)
            self._dirty.clear()
            if not groups and not everything:
                return
            try:
                async with self.redis.pipeline(transaction=False) as p:
                    p.set(f"{self.prefix}pnode:{self.node_id}", 1, ex=NODE_TTL)
                    for g in groups:
                        n = local.get(g, 0)
                        if n:
                            p.hset(self._key(g), self.node_id, n)
                            p.expire(self._key(g), NODE_TTL * 2)
                        else:
                            p.hdel(self._key(g), self.node_id)
                    await p.execute()
            except BaseException:
                self._dirty.update(groups)  # written at the next flush
                raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = 0.0
        while True:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_refresh - loop.time())):
                        await self._wake.wait()
                self._wake.clear()
                everything = loop.time() >= next_refresh
                if not everything:
                    await asyncio.sleep(FLUSH_DELAY)  # batch a burst of binds into one pipeline
                await self.flush(everything)
                if everything:
                    next_refresh = loop.time() + REFRESH
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                log.warning("group socket counts not written (%s); retrying", e)
                await asyncio.sleep(1.0)
