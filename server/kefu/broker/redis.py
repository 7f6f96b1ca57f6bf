"""Redis broker: pub/sub for fan-out between processes and machines.

A node subscribes `<prefix>ch:<channel>` while it holds a socket for the channel, so `PUBLISH`'s
count says how many nodes received an envelope. When the subscriber connection drops, redis-py
reconnects and subscribes again; envelopes published meanwhile are gone, so once the subscriptions
are confirmed again (a PING on the same connection, answered after them) the hub is told there was a
gap and every socket on this node is asked to sync (docs/architecture.md, "No silent gaps").

A subscribe or unsubscribe is sent without waiting for Redis's confirmation; `settled` waits for
it: a PING on the subscription connection is answered after every command sent before it. What
one loop iteration writes there goes out in one write, its PING last, shared by every caller of
that iteration. So a page is told it is bound, and a group change is answered, only once a
publish from any node reaches (or no longer reaches) this node. A PING whose connection is lost
is not sent again: the reconnect subscribes every channel again and then releases its waiters.

Publishes are batched: those made while a batch is in flight go out together in the next one, in
the order they were made, as one script call that publishes each and returns their subscriber
counts — one command and one reply per batch, where a pipeline of PUBLISH commands cost redis-py a
command object and a read (with its timeout) per publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kefu import metrics
from kefu.broker.base import OnEnvelope, OnGap
from kefu.coalesce import JoinedPerIteration, coalesced
from kefu.core.routing import Envelope
from kefu.errors import BadJson, Unavailable

try:  # what redis-py's hiredis parser answers while no whole response is buffered
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # another redis-py layout: every message comes through get_message
    _NOT_ENOUGH_DATA = None

log = logging.getLogger(__name__)


MAX_BATCH = 64  # publishes in one script call

# ARGV: channel, data, channel, data, … → the subscriber count of each channel, in order.
_PUBLISH_MANY = """
local counts = {}
for i = 1, #ARGV, 2 do
  counts[#counts + 1] = redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return counts
"""
SETTLE_TIMEOUT = 5.0  # seconds `settled` waits for Redis before answering `Unavailable`
_SETTLED = b"kefu-settled-"  # the payload of a `settled` PING (the reconnect PING has none)


def _expire(barrier: asyncio.Future[None]) -> None:
    if not barrier.done():
        barrier.set_exception(Unavailable("the broker did not confirm a subscription in time"))


def _retrieved(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # a barrier whose waiters all gave up logs nothing at collection


def channel_key(prefix: str, channel: str) -> str:
    return f"{prefix}ch:{channel}"


class PublishBatches:
    """One batch at a time; what arrives meanwhile waits for the next (automatic pipelining)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._publish_many = redis.register_script(_PUBLISH_MANY)
        self._queue: list[tuple[list[str], str, asyncio.Future[list[int]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def publish(self, keys: list[str], data: str) -> asyncio.Future[list[int]]:
        """The subscriber count of each key, once the batch holding this publish has run."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append((keys, data, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())  # next tick: more may join
        return done

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    counts = await self._publish_many(
                        args=[x for keys, data, _ in batch for key in keys for x in (key, data)])
                except asyncio.CancelledError:  # stopping: nobody waits on this batch for ever
                    for _, _, done in batch:
                        done.cancel()
                    raise
                except Exception as e:  # every publish of the batch failed alike
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                    continue
                at = 0
                for keys, _, done in batch:
                    if not done.done():
                        done.set_result([int(n) for n in counts[at:at + len(keys)]])
                    at += len(keys)
        finally:
            self._flusher = None

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for _, _, done in self._queue:
            done.cancel()
        self._queue.clear()


class RedisBroker:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._batches = PublishBatches(redis)
        self._reader: asyncio.Task[None] | None = None
        self._on_envelope: OnEnvelope | None = None
        self._on_gap: OnGap | None = None
        self._connected = False
        self._next_ping: asyncio.Future[None] | None = None  # the barrier the next PING sends
        self._pings: dict[bytes, asyncio.Future[None]] = {}  # PINGs sent, by payload
        self._ping_seq = 0
        self._out: JoinedPerIteration | None = None  # the subscription connection's writes

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self, on_envelope: OnEnvelope, on_gap: OnGap) -> None:
        self._on_envelope, self._on_gap = on_envelope, on_gap
        # A standing subscription keeps the connection open before any socket arrives.
        await self._pubsub.subscribe(channel_key(self.prefix, "_node"))
        self._connected = True
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        await self._batches.stop()
        if self._next_ping is not None:
            self._next_ping.cancel()
        self._release_pings(cancel=True)
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()

    async def subscribe(self, channel: str) -> None:
        key = channel_key(self.prefix, channel)
        if not self._write_now("SUBSCRIBE", key):
            await self._pubsub.subscribe(key)
            return
        # What redis-py's subscribe records after sending: the channels it subscribes again after
        # a reconnect (so a subscription written just before a cut is not lost).
        name = self._recorded(key)
        self._pubsub.channels[name] = None
        self._pubsub.pending_unsubscribe_channels.discard(name)

    async def unsubscribe(self, channel: str) -> None:
        key = channel_key(self.prefix, channel)
        # Recorded first, as redis-py's unsubscribe does: its handler of the confirmation drops
        # the channel from those it would subscribe again after a reconnect.
        self._pubsub.pending_unsubscribe_channels.add(self._recorded(key))
        if not self._write_now("UNSUBSCRIBE", key):
            await self._pubsub.unsubscribe(key)

    def _recorded(self, key: str) -> Any:
        """A channel as redis-py keys its records of them (`PubSub._normalize_keys`)."""
        encoder = self._pubsub.encoder
        return encoder.decode(encoder.encode(key))

    def _joined(self) -> JoinedPerIteration | None:
        """The subscription connection's writes of this loop iteration, if it is up: redis-py's
        `execute_command` re-checks the connection through its retry machinery and dispatches an
        event on every call, 80 µs of a connect's CPU for each subscribe, unsubscribe and the
        `settled` PING (whose PONG the reader takes like the confirmations). Written together at
        the iteration's end, a QR bind's two subscribes and the PING cost Redis one read, not
        three. The replies come through the reader like any others; a connection lost meanwhile is
        noticed there and redis-py subscribes its recorded channels again. None: take redis-py's
        way."""
        conn = self._pubsub.connection
        writer = getattr(conn, "_writer", None)
        if conn is None or not conn.is_connected or writer is None or writer.is_closing():
            return None
        if self._out is None or self._out.stream is not writer:
            self._out = JoinedPerIteration(writer, self._barrier_ping)
        return self._out

    def _write_now(self, *command: str | bytes) -> bool:
        out, conn = self._joined(), self._pubsub.connection
        if out is None or conn is None:
            return False
        out.write((hiredis.pack_command(command),))  # as the lane does: a tenth of redis-py's cost
        return True

    async def settled(self) -> None:
        barrier = self._next_ping
        if barrier is None:
            barrier = self._next_ping = self._barrier()
            out = self._joined()
            if out is not None:
                out.write(())  # its PING ends this iteration's write, after every subscribe in it
            else:  # the connection is down: reconnected, it subscribes everything again, then
                self._next_ping = None  # releases every barrier (`_release_pings`)
                self._register(barrier)
        await asyncio.shield(barrier)

    def _barrier(self) -> asyncio.Future[None]:
        """A future the PONG of one PING settles, shared by every caller until that PING is
        written, and failed with `Unavailable` if Redis has not answered in SETTLE_TIMEOUT."""
        loop = asyncio.get_running_loop()
        barrier: asyncio.Future[None] = loop.create_future()
        late = loop.call_later(SETTLE_TIMEOUT, _expire, barrier)
        barrier.add_done_callback(lambda _: late.cancel())
        barrier.add_done_callback(_retrieved)
        return barrier

    def _barrier_ping(self) -> list[bytes]:
        """The PING of the pending barrier, as the last command of an iteration's write. If the
        connection went away meanwhile, the write is dropped and the reconnect releases it."""
        barrier, self._next_ping = self._next_ping, None
        if barrier is None or barrier.done():
            return []
        payload, conn = self._register(barrier), self._pubsub.connection
        return [] if conn is None else [hiredis.pack_command(("PING", payload))]

    def _register(self, barrier: asyncio.Future[None]) -> bytes:
        self._ping_seq += 1
        payload = _SETTLED + str(self._ping_seq).encode()
        self._pings[payload] = barrier
        return payload

    def _settle(self, payload: bytes) -> None:
        barrier = self._pings.pop(payload, None)
        if barrier is not None and not barrier.done():
            barrier.set_result(None)

    def _release_pings(self, cancel: bool = False) -> None:
        """The connection was restored (redis-py subscribed every channel again, confirmed before
        the reconnect's PONG), or the broker stops: nobody waits for a PONG that will not come."""
        for barrier in self._pings.values():
            if not barrier.done():
                barrier.cancel() if cancel else barrier.set_result(None)
        self._pings.clear()

    async def publish(self, channels: tuple[str, ...], env: Envelope) -> list[int]:
        return await self.publish_soon(channels, env)

    def publish_soon(self, channels: tuple[str, ...], env: Envelope) -> asyncio.Future[list[int]]:
        return self._batches.publish([channel_key(self.prefix, channel) for channel in channels], env.dumps())

    async def online(self, channel: str) -> bool:
        counts = await self.redis.pubsub_numsub(channel_key(self.prefix, channel))
        return bool(counts and counts[0][1])

    async def _read(self) -> None:
        confirming = False
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
                if not self._connected and not confirming:
                    # get_message reconnected and re-subscribed; the PONG comes after the confirmations.
                    await self._pubsub.ping()
                    confirming = True
                if msg is None:  # an ignored confirmation (or nothing, in a second): what came with
                    msg = await self._next_buffered()  # it is taken from the buffer all the same
                while msg is not None:
                    pong = msg["data"] if msg["type"] == "pong" else None
                    if isinstance(pong, bytes) and pong.startswith(_SETTLED):
                        self._settle(pong)
                    elif pong is not None and confirming:
                        self._connected, confirming = True, False
                        self._release_pings()
                        metrics.BROKER_RECONNECTS.inc()
                        log.info("broker connection restored; asking this node's sockets to sync")
                        if self._on_gap:
                            self._on_gap()
                    elif msg["type"] == "message":
                        self._deliver(msg["channel"], msg["data"])
                    msg = await self._next_buffered()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                if self._connected:
                    log.warning("broker connection lost (%s); reconnecting", e)
                self._connected, confirming = False, False
                await asyncio.sleep(0.5)
            except Exception:  # a bug in one envelope's handling must not end every node's fan-out
                log.exception("broker: an envelope could not be handled")

    async def _next_buffered(self) -> dict[str, Any] | None:
        """The next message already read off the socket, or None. Envelopes — nearly all of what
        arrives — go straight to the hub from hiredis's buffer: redis-py's `get_message` costs a
        health check, a timeout and a dict per message, 40 % of a node's CPU under a push load.
        So do subscription confirmations (redis-py keeps no state for them) and the PONGs of
        `settled`. Anything else (an unsubscribe's confirmation, the reconnect's PONG) goes through
        redis-py's own `handle_message`, which keeps its subscription state. None also when the
        connection's parser is not hiredis (then every message comes through `get_message`)."""
        conn = self._pubsub.connection
        gets = getattr(getattr(getattr(conn, "_parser", None), "_reader", None), "gets", None)
        if gets is None or _NOT_ENOUGH_DATA is None:
            return None
        while (response := self._take_fast(gets)) is not _NOT_ENOUGH_DATA:
            msg: dict[str, Any] | None = await self._pubsub.handle_message(
                response, ignore_subscribe_messages=True)
            if msg is not None:
                return msg
        return None

    def _take_fast(self, gets: Callable[[], Any]) -> Any:
        """Handle buffered replies that need no await, in one step (so frames they fan out to one
        socket go out in one write); return the first that does, or `_NOT_ENOUGH_DATA`."""
        with coalesced():
            while (response := gets()) is not _NOT_ENOUGH_DATA:
                if isinstance(response, Exception):
                    raise response
                if isinstance(response, list) and len(response) >= 2:
                    kind = response[0]
                    if kind == b"message" and len(response) == 3:
                        self._deliver(response[1], response[2])
                        continue
                    if kind == b"subscribe":  # a confirmation: redis-py keeps no state for it
                        continue
                    data = response[1]
                    if kind == b"pong" and isinstance(data, bytes) and data.startswith(_SETTLED):
                        self._settle(data)
                        continue
                return response
        return response

    def _deliver(self, channel: bytes | str, data: bytes | str) -> None:
        if self._on_envelope is None:
            return
        chan = channel.decode() if isinstance(channel, bytes) else channel
        try:
            env = Envelope.loads(data)
        except (BadJson, KeyError, TypeError):
            log.error("dropping a malformed envelope on %s", chan)
            return
        self._on_envelope(chan[len(self.prefix) + 3:], env)
