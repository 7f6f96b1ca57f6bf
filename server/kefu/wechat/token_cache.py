"""One access_token per WeChat app for every kefu process, refreshed by one process at a time.

With Redis, the token and its expiry (Unix seconds) live under `<prefix>wxtoken:<appid>`; a
process that finds none (or one about to expire) takes `<prefix>wxtoken:<appid>:lock` (SET NX PX),
looks again, fetches `stable_token` and stores it; the others wait a moment and read what it
stored. A token WeChat calls stale (40001/40014/42001) is deleted only if it is still the stored
one, so a burst of callers that all saw it causes one refresh. Since `stable_token` returns the
same token to every caller anyway (wechat.md §2), a process that cannot reach Redis, or waits
longer than `WAIT` for a holder that died, just fetches it itself.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from redis.asyncio import Redis

from kefu import jsonio

LOCK_MS = 10_000
WAIT = 5.0  # seconds a process waits for another one's refresh before fetching itself

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_DROP = """
local held = redis.call('GET', KEYS[1])
if held and cjson.decode(held)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedTokens(Protocol):
    async def get(self, appid: str) -> tuple[str, float] | None:
        """The stored (token, expires at in Unix seconds), or None."""
        ...

    async def put(self, appid: str, token: str, expires_at: float) -> None: ...

    async def drop(self, appid: str, token: str) -> None:
        """Forget the stored token if it is still `token`."""
        ...

    async def lock(self, appid: str) -> str | None:
        """Take the refresh lock: its value (to release it with), or None if another holds it."""
        ...

    async def unlock(self, appid: str, value: str) -> None: ...


class RedisTokens:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._unlock = redis.register_script(_UNLOCK)
        self._drop = redis.register_script(_DROP)

    def _key(self, appid: str) -> str:
        return f"{self.prefix}wxtoken:{appid}"

    async def get(self, appid: str) -> tuple[str, float] | None:
        raw = await self.redis.get(self._key(appid))
        if raw is None:
            return None
        try:
            d = jsonio.load_object(raw)
            return str(d["token"]), float(d["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None

    async def put(self, appid: str, token: str, expires_at: float) -> None:
        ttl = max(1, int(expires_at - time.time()))
        await self.redis.set(self._key(appid), jsonio.dumps({"token": token, "expires_at": expires_at}),
                             ex=ttl)

    async def drop(self, appid: str, token: str) -> None:
        await self._drop(keys=[self._key(appid)], args=[token])

    async def lock(self, appid: str) -> str | None:
        value = secrets.token_hex(8)
        ok = await self.redis.set(self._key(appid) + ":lock", value, nx=True, px=LOCK_MS)
        return value if ok else None

    async def unlock(self, appid: str, value: str) -> None:
        await self._unlock(keys=[self._key(appid) + ":lock"], args=[value])
