"""`GET /qrcode` per client address: at most `per_minute` codes in any 60 s, and at most `live`
codes that have not expired yet.

Each code costs a WeChat API call in real mode (with a daily quota) and holds a place among the
live codes until it expires, so an address that asks too often is refused (429 + Retry-After:
when its oldest counted code leaves the window). A code is counted *before* WeChat is asked, so a
burst of parallel requests cannot slip past the cap; `give_back` undoes that when the code could
not be made.

With Redis every process shares the counts (`<prefix>qrip:<address>`, a sorted set of the address's
codes scored by creation time, trimmed and checked in one Lua call, on Redis's clock); the embedded
engine keeps them in memory for at most `max_addresses` addresses (the least recently seen go
first), each at most max(per_minute, live) timestamps.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class QrQuotaPolicy:
    per_minute: int = 20
    live: int = 50
    lifetime: float = 300.0  # how long a code counts as live: KEFU_QR_EXPIRE_SECONDS


class QrQuota(Protocol):
    async def take(self, address: str, uid: str) -> float:
        """Count a new code (named `uid`, unique) for `address`: 0 to go ahead (counted), or the
        seconds to wait (not counted)."""
        ...

    async def give_back(self, address: str, uid: str) -> None:
        """The code `uid` was never made: it does not count."""
        ...


def wait_for(stamps: list[float], now: float, policy: QrQuotaPolicy) -> float:
    """Seconds until one more code is allowed, given the address's creation times (oldest first).
    Pure."""
    wait = 0.0
    for window, limit in ((policy.lifetime, policy.live), (MINUTE, policy.per_minute)):
        counted = [t for t in stamps if t > now - window]
        if len(counted) >= limit:
            wait = max(wait, counted[len(counted) - limit] + window - now)
    return max(wait, 0.0)


class LocalQrQuota:
    def __init__(self, policy: QrQuotaPolicy, max_addresses: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._max = max_addresses
        self._keep = max(policy.per_minute, policy.live)
        self._stamps: OrderedDict[str, array[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stamps)

    def _current(self, address: str, now: float) -> array[float]:
        stamps = self._stamps.get(address)
        if stamps is None:
            return array("d")
        horizon = now - max(self.policy.lifetime, MINUTE)
        cut = 0
        while cut < len(stamps) and stamps[cut] <= horizon:
            cut += 1
        del stamps[:cut]
        return stamps

    async def take(self, address: str, uid: str) -> float:
        now = self._clock()
        stamps = self._current(address, now)
        wait = wait_for(stamps.tolist(), now, self.policy)
        if wait > 0:
            return wait
        stamps.append(now)
        del stamps[:-self._keep]
        self._stamps[address] = stamps
        self._stamps.move_to_end(address)
        while len(self._stamps) > self._max:
            self._stamps.popitem(last=False)
        return 0.0

    async def give_back(self, address: str, uid: str) -> None:
        """Drop the newest count (which one does not matter for the counting, and remembering
        each code's name would cost more memory than the timestamps themselves)."""
        stamps = self._stamps.get(address)
        if stamps:
            stamps.pop()


# KEYS: the address's set. ARGV: uid, per minute, live, lifetime ms.
# Returns 0 (counted) or the milliseconds to wait (not counted).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_minute, live, lifetime = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local horizon = math.max(lifetime, 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - horizon)
local wait = 0
for _, w in ipairs({{lifetime, live}, {60000, per_minute}}) do
  local counted = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - w[1]), '+inf', 'WITHSCORES')
  local n = #counted / 2
  if n >= w[2] then
    local until_ms = tonumber(counted[2 * (n - w[2]) + 2]) + w[1] - now
    if until_ms > wait then wait = until_ms end
  end
end
if wait > 0 then return math.max(1, math.ceil(wait)) end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], horizon)
return 0
"""


class RedisQrQuota:
    def __init__(self, redis: Redis, prefix: str, policy: QrQuotaPolicy) -> None:
        self.redis = redis
        self.prefix = prefix
        self.policy = policy
        self._take = redis.register_script(_TAKE)

    def _key(self, address: str) -> str:
        return f"{self.prefix}qrip:{address}"

    async def take(self, address: str, uid: str) -> float:
        p = self.policy
        wait_ms = await self._take(keys=[self._key(address)],
                                   args=[uid, p.per_minute, p.live, math.ceil(p.lifetime * 1000)])
        return int(wait_ms) / 1000

    async def give_back(self, address: str, uid: str) -> None:
        await self.redis.zrem(self._key(address), uid)


def make_qr_quota(redis: Redis | None, prefix: str, policy: QrQuotaPolicy) -> QrQuota:
    return RedisQrQuota(redis, prefix, policy) if redis is not None else LocalQrQuota(policy)
