"""The login throttle's contract on both engines (in memory with a fake clock, and real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kefu.store.login_throttle import LocalLoginThrottle, RedisLoginThrottle, ThrottlePolicy
from tests.support import services
from tests.support.clock import Clock

EPS = 1e-6
POLICY = ThrottlePolicy(free_per_name=3, free_per_ip=6, window=60, delay=0.3, delay_max=1.2)


@pytest.fixture(params=["local", "redis"])
async def throttle(request: pytest.FixtureRequest) -> AsyncIterator[tuple[object, Clock | None]]:
    if request.param == "local":
        clock = Clock()
        yield LocalLoginThrottle(POLICY, clock=clock), clock
        return
    async with services.redis_under_prefix() as (redis, prefix):
        yield RedisLoginThrottle(redis, prefix, POLICY), None


async def _elapse(clock: Clock | None, seconds: float) -> None:
    if clock is None:
        await asyncio.sleep(seconds)
    else:
        clock.t += seconds


def test_policy_doubles_up_to_the_cap() -> None:
    p = ThrottlePolicy(free_per_name=5, delay=1.0, delay_max=300.0)
    assert [p.lock_for(n, 5) for n in range(3, 9)] == [0, 0, 1, 2, 4, 8]
    assert p.lock_for(14, 5) == 300 and p.lock_for(10**6, 5) == 300


async def test_free_failures_then_growing_locks(throttle):
    t, clock = throttle
    for _ in range(2):
        assert await t.attempt("1.1.1.1", "alice") == 0  # counted; wrong password
    assert await t.attempt("1.1.1.1", "alice") == 0  # the third sets a 0.3 s lock for the next
    assert 0 < await t.attempt("1.1.1.1", "alice") <= 0.3 + EPS
    assert await t.attempt("2.2.2.2", "alice") > 0  # the name is locked from anywhere
    assert await t.attempt("1.1.1.1", "bob") == 0  # other names are not
    await _elapse(clock, 0.35)
    assert await t.attempt("1.1.1.1", "alice") == 0  # fourth: 0.6 s
    assert 0.3 < await t.attempt("1.1.1.1", "alice") <= 0.6 + EPS
    await _elapse(clock, 0.65)
    assert await t.attempt("1.1.1.1", "alice") == 0  # fifth: 1.2 s, the cap
    assert 0.6 < await t.attempt("1.1.1.1", "alice") <= 1.2 + EPS


async def test_a_success_clears_the_name_but_not_the_ip(throttle):
    t, _ = throttle
    for i in range(5):
        assert await t.attempt("9.9.9.9", f"guess{i}") == 0
    assert await t.attempt("9.9.9.9", "carol") == 0
    await t.succeeded("9.9.9.9", "carol")
    # carol's success gave the IP its attempt back but did not wipe the five failures
    assert await t.attempt("9.9.9.9", "dave") == 0  # the sixth failure locks the IP
    assert await t.attempt("9.9.9.9", "carol") > 0
    assert await t.attempt("8.8.8.8", "carol") == 0  # carol's own count starts afresh
    await t.succeeded("8.8.8.8", "carol")
    for _ in range(3):
        assert await t.attempt("8.8.8.8", "carol") == 0


async def test_parallel_attempts_cannot_outrun_the_count(throttle):
    t, _ = throttle
    results = await asyncio.gather(*(t.attempt("7.7.7.7", "erin") for _ in range(20)))
    assert sum(1 for w in results if w == 0) == 3  # exactly the free ones go ahead


async def test_refund_gives_the_attempt_back(throttle):
    t, _ = throttle
    for _ in range(10):
        assert await t.attempt("6.6.6.6", "frank") == 0
        await t.refund("6.6.6.6", "frank")  # the store failed: neither right nor wrong
    assert await t.attempt("6.6.6.6", "frank") == 0


async def test_counts_expire_after_the_window() -> None:
    clock = Clock()
    t = LocalLoginThrottle(ThrottlePolicy(free_per_name=2, free_per_ip=100, window=60, delay=1,
                                          delay_max=1), clock=clock)
    await t.attempt("ip", "gina")
    clock.t += 61
    await t.attempt("ip", "gina")
    assert await t.attempt("ip", "gina") == 0  # the first failure was forgotten: this is the 2nd


async def test_local_memory_is_bounded() -> None:
    t = LocalLoginThrottle(POLICY, max_keys=50, clock=Clock())
    for i in range(1000):
        await t.attempt(f"10.0.{i // 256}.{i % 256}", f"name{i}")
    assert len(t) <= 50
