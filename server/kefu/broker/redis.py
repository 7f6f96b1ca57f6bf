"""Redis engine: pub/sub for fan-out between processes and machines, INCR + SET NX for ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from kefu.broker.base import OnMessage

log = logging.getLogger(__name__)

# One round trip: return the earlier "id:ts" for a known cmid, else allocate and remember one.
_CLAIM = """
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then return {seen, 1} end
end
local v = redis.call('INCR', KEYS[1]) .. ':' .. ARGV[1]
if KEYS[2] then redis.call('SET', KEYS[2], v, 'EX', ARGV[2]) end
return {v, 0}
"""
_FLOOR = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RedisBroker:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task | None = None
        self._on_message: OnMessage | None = None

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        # A standing subscription keeps the pubsub connection open before any socket arrives.
        await self._pubsub.subscribe(f"{self.prefix}ch:_node")
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(f"{self.prefix}ch:{channel}")

    async def unsubscribe(self, channel: str) -> None:
        await self._pubsub.unsubscribe(f"{self.prefix}ch:{channel}")

    async def publish(self, channels: tuple[str, ...], data: str) -> list[int]:
        async with self.redis.pipeline(transaction=False) as p:
            for channel in channels:
                p.publish(f"{self.prefix}ch:{channel}", data)
            return [int(n) for n in await p.execute()]

    async def online(self, channel: str) -> bool:
        counts = await self.redis.pubsub_numsub(f"{self.prefix}ch:{channel}")
        return bool(counts and counts[0][1])

    async def _read(self) -> None:
        strip = len(self.prefix) + 3
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # connection lost: redis-py reconnects and resubscribes
                log.exception("redis pubsub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if msg and msg["type"] == "message" and self._on_message:
                chan = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                data = msg["data"].decode() if isinstance(msg["data"], bytes) else msg["data"]
                try:
                    self._on_message(chan[strip:], data)
                except Exception:
                    log.exception("fan-out handler failed for %s", chan)


class RedisSequencer:
    def __init__(self, redis: Redis, prefix: str, dedupe_ttl: int) -> None:
        self.redis = redis
        self.counter = f"{prefix}msgid"
        self.prefix = prefix
        self.ttl = dedupe_ttl
        self._claim = redis.register_script(_CLAIM)
        self._floor = redis.register_script(_FLOOR)

    async def claim(self, sender: str, cmid: str | None, now_ms: int) -> tuple[int, int, bool]:
        keys = [self.counter] + ([f"{self.prefix}cmid:{sender}:{cmid}"] if cmid is not None else [])
        value, dup = await self._claim(keys=keys, args=[now_ms, self.ttl])
        msg_id, ts = (value.decode() if isinstance(value, bytes) else value).split(":")
        return int(msg_id), int(ts), bool(dup)

    async def forget(self, sender: str, cmid: str) -> None:
        await self.redis.delete(f"{self.prefix}cmid:{sender}:{cmid}")

    async def raise_floor(self, floor: int) -> None:
        await self._floor(keys=[self.counter], args=[floor])
