"""The Redis lane (store/redis_lane.py) against the machine's Redis, directly and through a proxy
that cuts or delays it: each caller gets its own reply, however many share the connection and
whoever gave up on the way; trouble is redis-py's ConnectionError or TimeoutError, and it passes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from kefu.store.redis_lane import RedisLane
from tests.support import services
from tests.support.proxy import CuttableProxy


async def test_concurrent_callers_each_get_their_own_reply_and_an_error_reply_is_theirs_alone():
    async with services.redis_under_prefix() as (redis, prefix):
        lane = RedisLane(redis)
        try:
            await asyncio.gather(*(lane.execute("SET", f"{prefix}{i}", f"v{i}") for i in range(300)))
            await lane.execute("HSET", f"{prefix}h", "state", "live", "n", 7)
            got = await asyncio.gather(
                *(lane.execute("GET", f"{prefix}{i}") for i in range(300)),
                lane.execute("HGETALL", f"{prefix}0"),  # a string: WRONGTYPE
                lane.execute("HGETALL", f"{prefix}h"),
                return_exceptions=True)
            assert got[:300] == [f"v{i}".encode() for i in range(300)]
            assert isinstance(got[300], ResponseError) and "WRONGTYPE" in str(got[300])
            assert got[301] == [b"state", b"live", b"n", b"7"]  # RESP2's flat list
            assert await lane.execute("HGETALL", f"{prefix}missing") == []
        finally:
            await lane.close()


@contextlib.asynccontextmanager
async def _lane_via_proxy(lag: float) -> AsyncIterator[tuple[RedisLane, CuttableProxy, str]]:
    """A lane to the machine's Redis through a proxy that delays every byte `lag` seconds."""
    async with services.redis_under_prefix() as (_, prefix):
        proxy = CuttableProxy(services.REDIS_HOST, services.REDIS_PORT, lag=lag)
        await proxy.start()
        redis = Redis.from_url(services.redis_url_via(proxy.port))
        lane = RedisLane(redis, timeout=10)
        try:
            yield lane, proxy, prefix
        finally:
            await lane.close()
            await redis.aclose()
            await proxy.cut()


async def test_a_cut_fails_the_commands_in_flight_and_the_next_one_after_the_restore_passes():
    async with _lane_via_proxy(lag=0.3) as (lane, proxy, prefix):
        await lane.execute("SET", f"{prefix}k", "before")
        in_flight = [asyncio.create_task(lane.execute("GET", f"{prefix}k")) for _ in range(20)]
        await asyncio.sleep(0.1)  # written, not yet answered (0.3 s each way)
        await proxy.cut()
        for t in in_flight:
            with pytest.raises(ConnectionError):
                await t
        with pytest.raises(ConnectionError):  # refused: Redis is gone for this client
            await lane.execute("GET", f"{prefix}k")
        proxy.lag = 0.0
        await proxy.restore()
        assert await lane.execute("GET", f"{prefix}k") == b"before"


async def test_a_caller_that_timed_out_never_receives_nor_steals_anyone_elses_reply():
    async with _lane_via_proxy(lag=0.25) as (lane, _, prefix):
        await lane.execute("MSET", f"{prefix}a", "A", f"{prefix}b", "B")
        lane.timeout = 0.2  # a round trip takes 0.5 s
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await lane.execute("GET", f"{prefix}a")
        assert time.monotonic() - started < 1
        lane.timeout = 10
        assert await lane.execute("GET", f"{prefix}b") == b"B"  # A's late reply went nowhere
        assert await lane.execute("GET", f"{prefix}a") == b"A"


async def test_a_lane_that_cannot_connect_says_so_at_once_and_close_is_safe_any_time():
    proxy = CuttableProxy(services.REDIS_HOST, services.REDIS_PORT)
    await proxy.start()
    port = proxy.port
    await proxy.cut()  # nothing listens there now
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    lane = RedisLane(redis)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await lane.execute("PING")
        assert time.monotonic() - started < 3
    finally:
        await lane.close()
        await lane.close()
        await redis.aclose()
