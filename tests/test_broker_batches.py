"""The Redis broker's publish batches: publishes made together share one pipeline, each gets its
own subscriber counts, and a failure reaches every publish of its batch (none is left waiting)."""

from __future__ import annotations

import asyncio
import math

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from kefu.broker.redis import MAX_BATCH, PublishBatches
from tests.support import services
from tests.support.server import free_port


async def test_publishes_made_together_share_a_pipeline_and_get_their_own_counts():
    async with services.redis_under_prefix() as (redis, prefix):
        listener = redis.pubsub()
        await listener.subscribe(prefix + "a", prefix + "b")
        batches = PublishBatches(redis)
        pipelines = 0
        real = redis.pipeline

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal pipelines
            pipelines += 1
            return real(*args, **kwargs)
        redis.pipeline = counting  # type: ignore[method-assign]
        keys = [prefix + "a", prefix + "nobody", prefix + "b"]
        got = await asyncio.gather(*(batches.publish(keys[: 1 + i % 3], f"m{i}") for i in range(300)))
        assert got == [[1], [1, 0], [1, 0, 1]] * 100
        assert pipelines == math.ceil(300 / MAX_BATCH)
        await listener.aclose()
        await batches.stop()


async def test_a_failed_batch_fails_every_publish_in_it_and_the_next_batch_starts_fresh():
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    batches = PublishBatches(dead)
    results = await asyncio.gather(*(batches.publish(["k"], "x") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    with pytest.raises(RedisConnectionError):
        await batches.publish(["k"], "again")
    await batches.stop()
    await dead.aclose()
