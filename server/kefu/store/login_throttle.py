"""Agent login throttling: per client IP and per agent name, with growing delays.

Each key (`ip:<addr>`, `name:<agent name>`) counts the failed logins of the last `window` seconds.
The first `free` failures cost nothing; from then on every failure locks the key for `delay`
seconds, doubling with each further failure up to `delay_max`. While a key is locked, logins are
refused (429 + Retry-After) without even checking the password, so a guesser learns nothing.

An attempt is counted *before* its password is checked (`attempt`), and given back when it
turns out not to be a failure (`succeeded`, `refund`): otherwise a burst of parallel guesses would
all pass the check before the first failure was recorded. A success clears the name's count (not
the IP's: logging in to one's own account must not wipe the record of guessing others').

With Redis every process shares the counts (`<prefix>login:<key>` hashes, Lua for atomicity, the
clock is Redis's); the embedded engine keeps them in memory, bounded.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_per_name: int = 5
    free_per_ip: int = 20
    window: float = 900.0
    delay: float = 1.0
    delay_max: float = 300.0

    def lock_for(self, failures: int, free: int) -> float:
        """Seconds a key is locked after its `failures`-th failure (0: not locked)."""
        if failures < free:
            return 0.0
        steps = failures - free
        return self.delay_max if steps >= 64 else min(self.delay_max, self.delay * 2.0 ** steps)


class LoginThrottle(Protocol):
    async def attempt(self, ip: str, name: str) -> float:
        """Count a login attempt as a failure in advance; 0 to go ahead, or the seconds to wait
        (the attempt is then not counted)."""
        ...

    async def succeeded(self, ip: str, name: str) -> None:
        """The password was right: clear the name's count, give the IP its attempt back."""
        ...

    async def refund(self, ip: str, name: str) -> None:
        """The attempt was neither right nor wrong (the store failed): give it back to both."""
        ...


def _keys(ip: str, name: str) -> tuple[str, str]:
    return f"ip:{ip}", f"name:{name}"


@dataclass(slots=True)
class _Count:
    failures: int
    locked_until: float
    expires: float


class LocalLoginThrottle:
    """In-process throttle for the embedded default; at most `max_keys` keys (oldest dropped)."""

    def __init__(self, policy: ThrottlePolicy, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._max = max_keys
        self._counts: OrderedDict[str, _Count] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def _get(self, key: str, now: float) -> _Count | None:
        c = self._counts.get(key)
        if c is not None and c.expires <= now:
            del self._counts[key]
            return None
        return c

    def _limits(self, ip: str, name: str) -> list[tuple[str, int]]:
        ip_key, name_key = _keys(ip, name)
        return [(ip_key, self.policy.free_per_ip), (name_key, self.policy.free_per_name)]

    async def attempt(self, ip: str, name: str) -> float:
        now = self._clock()
        limits = self._limits(ip, name)
        wait = max((c.locked_until - now for k, _ in limits if (c := self._get(k, now))), default=0.0)
        if wait > 0:
            return wait
        for key, free in limits:
            c = self._get(key, now) or _Count(0, 0.0, 0.0)
            c.failures += 1
            lock = self.policy.lock_for(c.failures, free)
            if lock:
                c.locked_until = now + lock
            c.expires = now + max(self.policy.window, lock)
            self._counts[key] = c
            self._counts.move_to_end(key)
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)
        return 0.0

    def _give_back(self, key: str, free: int) -> None:
        c = self._get(key, self._clock())
        if c is None:
            return
        c.failures -= 1
        if c.failures <= 0:
            del self._counts[key]
        elif c.failures < free:
            c.locked_until = 0.0

    async def succeeded(self, ip: str, name: str) -> None:
        (ip_key, free_ip), (name_key, _) = self._limits(ip, name)
        self._counts.pop(name_key, None)
        self._give_back(ip_key, free_ip)

    async def refund(self, ip: str, name: str) -> None:
        for key, free in self._limits(ip, name):
            self._give_back(key, free)


# KEYS: the ip and name keys. ARGV: free per ip, free per name, delay ms, delay max ms, window ms.
# Returns 0 (go ahead, counted) or the milliseconds to wait (not counted).
_ATTEMPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for _, k in ipairs(KEYS) do
  local u = tonumber(redis.call('HGET', k, 'until') or '0')
  if u - now > wait then wait = u - now end
end
if wait > 0 then return wait end
local delay, delay_max, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
for i, k in ipairs(KEYS) do
  local free = tonumber(ARGV[i])
  local n = redis.call('HINCRBY', k, 'fails', 1)
  local ttl = window
  if n >= free then
    local lock = delay_max
    if n - free < 64 then lock = math.min(delay_max, delay * 2 ^ (n - free)) end
    lock = math.floor(lock)
    redis.call('HSET', k, 'until', now + lock)
    if lock > ttl then ttl = lock end
  end
  redis.call('PEXPIRE', k, ttl)
end
return 0
"""
# KEYS: keys to give one attempt back to. ARGV: their free counts.
_GIVE_BACK = """
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    local n = redis.call('HINCRBY', k, 'fails', -1)
    if n <= 0 then redis.call('DEL', k)
    elseif n < tonumber(ARGV[i]) then redis.call('HDEL', k, 'until') end
  end
end
return 1
"""


class RedisLoginThrottle:
    def __init__(self, redis: Redis, prefix: str, policy: ThrottlePolicy) -> None:
        self.redis = redis
        self.prefix = prefix
        self.policy = policy
        self._attempt = redis.register_script(_ATTEMPT)
        self._give_back = redis.register_script(_GIVE_BACK)

    def _keys(self, ip: str, name: str) -> list[str]:
        return [f"{self.prefix}login:{k}" for k in _keys(ip, name)]

    async def attempt(self, ip: str, name: str) -> float:
        p = self.policy
        wait_ms = await self._attempt(
            keys=self._keys(ip, name),
            args=[p.free_per_ip, p.free_per_name, math.ceil(p.delay * 1000),
                  math.ceil(p.delay_max * 1000), math.ceil(p.window * 1000)])
        return int(wait_ms) / 1000

    async def succeeded(self, ip: str, name: str) -> None:
        ip_key, name_key = self._keys(ip, name)
        await self.redis.delete(name_key)
        await self._give_back(keys=[ip_key], args=[self.policy.free_per_ip])

    async def refund(self, ip: str, name: str) -> None:
        await self._give_back(keys=self._keys(ip, name),
                              args=[self.policy.free_per_ip, self.policy.free_per_name])


def make_login_throttle(redis: Redis | None, prefix: str, policy: ThrottlePolicy) -> LoginThrottle:
    return RedisLoginThrottle(redis, prefix, policy) if redis is not None else LocalLoginThrottle(policy)
