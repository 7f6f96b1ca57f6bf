"""Live QR codes (uid → ticket until the QR expires) and callback dedupe: one interface, two engines.

A uid's record moves `reserved` (uid taken, QR being created) → `live` (ticket known: pages may
bind, a scan may log in) → `used` (a scan logged someone in; a second scan does nothing). The record
expires with the QR code. With Redis every process shares the records (keys `<prefix>qr:<uid>`,
hashes with PEXPIRE), the dedupe marks (`<prefix>cbseen:<key>`, SET NX EX) and the callback nonce
marks (`<prefix>cbnonce:<timestamp>:<nonce>` → body digest, SET NX EX); the embedded engine keeps
all three in memory, bounded.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from redis.asyncio import Redis

from kefu.store.redis_lane import RedisLane

State = Literal["reserved", "live", "used"]


class StoreFull(Exception):
    """The embedded store holds as many live QR codes as it may; try again when some expire."""


@dataclass(frozen=True, slots=True)
class QrRecord:
    state: State
    ticket: str | None = None
    expire_seconds: int | None = None


class QrStore(Protocol):
    async def reserve(self, uid: str, ttl: float) -> bool:
        """Take `uid` if no live record has it (SET NX semantics)."""
        ...

    async def put(self, uid: str, ticket: str, expire_seconds: int) -> None:
        """The QR code for a reserved uid exists: record its ticket; expire with the QR code."""
        ...

    async def get(self, uid: str) -> QrRecord | None: ...

    async def drop(self, uid: str) -> None: ...

    async def claim(self, uid: str, ticket: str) -> int | None:
        """`live` → `used` if `ticket` matches, atomically; the QR's expire_seconds, else None."""
        ...

    async def release(self, uid: str, ticket: str) -> None:
        """Undo a claim (`used` → `live`): the login could not be delivered, let a rescan try."""
        ...

    async def first_seen(self, key: str, ttl: int) -> bool:
        """True the first time `key` is seen within `ttl` seconds (callback dedupe)."""
        ...

    async def claim_nonce(self, timestamp: str, nonce: str, body_digest: str, ttl: int) -> bool:
        """Record that a signed callback query (timestamp + nonce) was used for this body. False
        when it was used within `ttl` seconds for another body: a replay. The same body again is
        WeChat re-sending it, which the event dedupe handles, so that is True."""
        ...


class _Marks:
    """Keys remembered for a fixed time, oldest first, at most `limit` of them (the oldest go
    first when full). Insertion order is expiry order because each user passes one ttl."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._marks: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._marks)

    def add(self, key: str, value: str, ttl: float) -> str | None:
        """Remember `key` → `value` unless it is remembered; returns the value it already had."""
        now = self._clock()
        while self._marks:
            oldest, (_, deadline) = next(iter(self._marks.items()))
            if deadline > now and len(self._marks) < self._limit:
                break
            del self._marks[oldest]
        held = self._marks.get(key)
        if held is not None:
            return held[0]
        self._marks[key] = (value, now + ttl)
        return None


class LocalQrStore:
    """In-process store for the embedded default. Expiry is lazy (a heap of deadlines); the number
    of live QR codes and of dedupe marks is capped so a flood cannot grow memory without bound."""

    def __init__(self, max_codes: int = 100_000, max_seen: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._max_codes = max_codes
        self._codes: dict[str, tuple[QrRecord, float]] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._seen = _Marks(max_seen, clock)
        self._nonces = _Marks(max_seen, clock)

    def _expire(self) -> None:
        now = self._clock()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, uid = heapq.heappop(self._deadlines)
            entry = self._codes.get(uid)
            if entry is not None and entry[1] <= now:
                del self._codes[uid]

    def _live(self, uid: str) -> QrRecord | None:
        self._expire()
        entry = self._codes.get(uid)
        return entry[0] if entry is not None else None

    def _set(self, uid: str, record: QrRecord, deadline: float) -> None:
        self._codes[uid] = (record, deadline)
        heapq.heappush(self._deadlines, (deadline, uid))

    async def reserve(self, uid: str, ttl: float) -> bool:
        if self._live(uid) is not None:
            return False
        if len(self._codes) >= self._max_codes:
            raise StoreFull(f"{self._max_codes} QR codes are live")
        self._set(uid, QrRecord("reserved"), self._clock() + ttl)
        return True

    async def put(self, uid: str, ticket: str, expire_seconds: int) -> None:
        self._set(uid, QrRecord("live", ticket, expire_seconds), self._clock() + expire_seconds)

    async def get(self, uid: str) -> QrRecord | None:
        return self._live(uid)

    async def drop(self, uid: str) -> None:
        self._codes.pop(uid, None)

    async def _swap(self, uid: str, ticket: str, old: State, new: State) -> int | None:
        rec = self._live(uid)
        if rec is None or rec.state != old or rec.ticket != ticket:
            return None
        self._codes[uid] = (QrRecord(new, rec.ticket, rec.expire_seconds), self._codes[uid][1])
        return rec.expire_seconds

    async def claim(self, uid: str, ticket: str) -> int | None:
        return await self._swap(uid, ticket, "live", "used")

    async def release(self, uid: str, ticket: str) -> None:
        await self._swap(uid, ticket, "used", "live")

    async def first_seen(self, key: str, ttl: int) -> bool:
        return self._seen.add(key, "", ttl) is None

    async def claim_nonce(self, timestamp: str, nonce: str, body_digest: str, ttl: int) -> bool:
        held = self._nonces.add(f"{timestamp}:{nonce}", body_digest, ttl)
        return held is None or held == body_digest


_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'reserved')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
# ARGV: ticket, from-state, to-state. Returns expire_seconds on success, nil otherwise.
_SWAP = """
local v = redis.call('HMGET', KEYS[1], 'state', 'ticket', 'expire_seconds')
if v[1] == ARGV[2] and v[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[3])
  return v[3]
end
return false
"""
# ARGV: body digest, ttl seconds. Returns the digest already recorded, or nil after recording ours.
_NONCE = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


class RedisQrStore:
    def __init__(self, redis: Redis, prefix: str, lane: RedisLane) -> None:
        self.redis = redis
        self.lane = lane  # `get` runs on every page bind
        self.prefix = prefix
        self._reserve = redis.register_script(_RESERVE)
        self._swap = redis.register_script(_SWAP)
        self._nonce = redis.register_script(_NONCE)

    def _key(self, uid: str) -> str:
        return f"{self.prefix}qr:{uid}"

    async def reserve(self, uid: str, ttl: float) -> bool:
        return bool(await self._reserve(keys=[self._key(uid)], args=[max(1, int(ttl * 1000))]))

    async def put(self, uid: str, ticket: str, expire_seconds: int) -> None:
        key = self._key(uid)
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(key, mapping={"state": "live", "ticket": ticket, "expire_seconds": expire_seconds})
            p.expire(key, expire_seconds)
            await p.execute()

    async def get(self, uid: str) -> QrRecord | None:
        raw: list[bytes] = await self.lane.execute("HGETALL", self._key(uid))  # RESP2: k, v, k, v…
        if not raw:
            return None
        d = dict(zip((k.decode() for k in raw[::2]), (v.decode() for v in raw[1::2]), strict=True))
        exp = d.get("expire_seconds")
        return QrRecord(d.get("state", "reserved"), d.get("ticket"),  # type: ignore[arg-type]
                        int(exp) if exp is not None else None)

    async def drop(self, uid: str) -> None:
        await self.redis.delete(self._key(uid))

    async def claim(self, uid: str, ticket: str) -> int | None:
        got = await self._swap(keys=[self._key(uid)], args=[ticket, "live", "used"])
        return int(got) if got is not None else None

    async def release(self, uid: str, ticket: str) -> None:
        await self._swap(keys=[self._key(uid)], args=[ticket, "used", "live"])

    async def first_seen(self, key: str, ttl: int) -> bool:
        return bool(await self.redis.set(f"{self.prefix}cbseen:{key}", 1, nx=True, ex=ttl))

    async def claim_nonce(self, timestamp: str, nonce: str, body_digest: str, ttl: int) -> bool:
        held = await self._nonce(keys=[f"{self.prefix}cbnonce:{timestamp}:{nonce}"],
                                 args=[body_digest, max(1, ttl)])
        if held is None:
            return True
        return (held.decode() if isinstance(held, bytes) else held) == body_digest


def make_qr_store(redis: Redis | None, prefix: str, lane: RedisLane | None) -> QrStore:
    if redis is None or lane is None:
        return LocalQrStore()
    return RedisQrStore(redis, prefix, lane)
