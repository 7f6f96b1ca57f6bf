"""The Redis broker: publishes made together share one pipeline, each gets its own subscriber
counts, and a failure reaches every publish of its batch (none is left waiting); subscriptions
written straight to the connection are recorded where redis-py subscribes them again; what the
callers of one loop iteration subscribe goes out in one write with one PING after it, and a PING
Redis does not answer fails its waiters with `Unavailable`."""

from __future__ import annotations

import asyncio
import math

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from kefu.broker import redis as redis_broker
from kefu.broker.redis import MAX_BATCH, PublishBatches, RedisBroker, channel_key
from kefu.core.routing import Envelope
from kefu.errors import Unavailable
from tests.support import services
from tests.support.server import free_port


async def test_publishes_made_together_share_a_round_trip_and_get_their_own_counts():
    async with services.redis_under_prefix() as (redis, prefix):
        listener = redis.pubsub()
        await listener.subscribe(prefix + "a", prefix + "b")
        batches = PublishBatches(redis)
        calls = 0
        real = batches._publish_many

        async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real(*args, **kwargs)
        batches._publish_many = counting  # type: ignore[assignment]
        keys = [prefix + "a", prefix + "nobody", prefix + "b"]
        got = await asyncio.gather(*(batches.publish(keys[: 1 + i % 3], f"m{i}") for i in range(300)))
        assert got == [[1], [1, 0], [1, 0, 1]] * 100
        assert calls == math.ceil(300 / MAX_BATCH)
        received = []
        deadline = asyncio.get_running_loop().time() + 5
        while len(received) < 400 and asyncio.get_running_loop().time() < deadline:
            m = await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if m is not None:
                received.append((m["channel"].decode().removeprefix(prefix), m["data"].decode()))
        expected = [(k.removeprefix(prefix), f"m{i}") for i in range(300) for k in keys[: 1 + i % 3]
                    if not k.endswith("nobody")]
        assert received == expected, "every publish, in the order made"
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


async def test_subscriptions_written_directly_are_recorded_as_redis_py_records_them():
    """`subscribe`/`unsubscribe` write to the subscription connection themselves; redis-py must
    still know the channels (it subscribes them again after a reconnect) and forget the ones left."""
    async with services.redis_under_prefix() as (redis, prefix):
        broker = RedisBroker(redis, prefix)
        got: list[tuple[str, str]] = []
        await broker.start(lambda channel, env: got.append((channel, env.frame["n"])), lambda: None)
        try:
            await broker.subscribe("user:a")
            await broker.subscribe("user:b")
            await broker.settled()
            recorded = {channel_key(prefix, c).encode() for c in ("user:a", "user:b")}
            assert recorded <= set(broker._pubsub.channels)
            assert await broker.publish(("user:a", "user:b"), _env(1)) == [1, 1]

            await broker.unsubscribe("user:a")
            await broker.settled()  # the confirmation is read before the PONG
            assert channel_key(prefix, "user:a").encode() not in broker._pubsub.channels
            assert not broker._pubsub.pending_unsubscribe_channels
            assert await broker.publish(("user:a", "user:b"), _env(2)) == [0, 1]

            # A cut connection: redis-py subscribes what it recorded again, and only that.
            await broker._pubsub.connection.disconnect()
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline:
                if await broker.publish(("user:b",), _env(3)) == [1]:
                    break
                await asyncio.sleep(0.1)
            assert await broker.publish(("user:a", "user:b"), _env(4)) == [0, 1]
            while ("user:b", 4) not in got and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert ("user:b", 4) in got and ("user:a", 1) in got
            assert [n for c, n in got if c == "user:a"] == [1], "nothing after the unsubscribe"
        finally:
            await broker.stop()


async def test_one_iterations_subscribes_and_their_ping_go_out_in_one_write():
    """Twenty binds at once: forty SUBSCRIBEs and one PING in one write, the PING last; each
    caller's `settled` returns once every one of the channels counts this node."""
    async with services.redis_under_prefix() as (redis, prefix):
        broker = RedisBroker(redis, prefix)
        await broker.start(lambda channel, env: None, lambda: None)
        try:
            writer = broker._pubsub.connection._writer  # type: ignore[union-attr]
            writes: list[list[bytes]] = []
            real = writer.writelines

            def recording(data):  # type: ignore[no-untyped-def]
                writes.append(list(data))
                real(writes[-1])
            writer.writelines = recording

            async def bind(i: int) -> list[int]:
                await broker.subscribe(f"page:{i}")
                await broker.subscribe(f"page:{i}:t")
                await broker.settled()
                return await broker.publish((f"page:{i}", f"page:{i}:t"), _env(i))
            assert await asyncio.gather(*(bind(i) for i in range(20))) == [[1, 1]] * 20
            sent = b"".join(writes[0])
            assert len(writes) == 1, "one write for the whole iteration"
            assert sent.count(b"SUBSCRIBE") == 40 and sent.count(b"PING") == 1
            assert sent.rindex(b"PING") > sent.rindex(b"SUBSCRIBE"), "the PING after every subscribe"
            assert not broker._pings and broker._next_ping is None
        finally:
            await broker.stop()


async def test_a_binds_confirmations_and_pong_cost_one_wake_of_redis_py_not_one_each():
    """What arrives together is read from hiredis's buffer after the first message, even when that
    first one is a subscription confirmation redis-py's `get_message` answers with None."""
    async with services.redis_under_prefix() as (redis, prefix):
        broker = RedisBroker(redis, prefix)
        await broker.start(lambda channel, env: None, lambda: None)
        try:
            calls = 0
            real = broker._pubsub.get_message

            async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
                nonlocal calls
                calls += 1
                return await real(*args, **kwargs)
            broker._pubsub.get_message = counting  # type: ignore[method-assign]
            await asyncio.sleep(0)  # the reader waits in the counting one from its next call on
            for i in range(20):
                await broker.subscribe(f"page:{i}")
                await broker.subscribe(f"page:{i}:t")
                await broker.settled()
            assert calls <= 30, f"{calls} calls of get_message for 20 binds (3 replies each)"
        finally:
            await broker.stop()


async def test_a_ping_redis_does_not_answer_fails_its_waiters_in_time(monkeypatch: pytest.MonkeyPatch):
    async with services.redis_under_prefix() as (redis, prefix):
        broker = RedisBroker(redis, prefix)
        await broker.start(lambda channel, env: None, lambda: None)
        try:
            monkeypatch.setattr(redis_broker, "SETTLE_TIMEOUT", 0.3)
            monkeypatch.setattr(broker, "_settle", lambda payload: None)  # the PONG settles nothing
            await broker.subscribe("page:x")
            started = asyncio.get_running_loop().time()
            results = await asyncio.gather(broker.settled(), broker.settled(), return_exceptions=True)
            assert all(isinstance(r, Unavailable) for r in results), results
            assert asyncio.get_running_loop().time() - started < 2
        finally:
            await broker.stop()


async def test_a_connection_going_away_before_its_ping_is_written_still_settles():
    """The subscription connection closes in the iteration a caller asks `settled`: its PING goes
    redis-py's way (which reconnects and subscribes again), never into the closed stream."""
    async with services.redis_under_prefix() as (redis, prefix):
        broker = RedisBroker(redis, prefix)
        await broker.start(lambda channel, env: None, lambda: None)
        try:
            await broker.subscribe("page:y")
            waiting = asyncio.ensure_future(broker.settled())
            await asyncio.sleep(0)  # it has made the barrier; its PING waits for the iteration's end
            broker._pubsub.connection._writer.close()  # type: ignore[union-attr]
            await asyncio.wait_for(waiting, 10)
            deadline = asyncio.get_running_loop().time() + 10
            while await broker.publish(("page:y",), _env(0)) != [1]:
                assert asyncio.get_running_loop().time() < deadline, "subscribed again"
                await asyncio.sleep(0.1)
        finally:
            await broker.stop()


def _env(n: int) -> Envelope:
    return Envelope(kind="message", side="all", origin="", frame={"n": n})
