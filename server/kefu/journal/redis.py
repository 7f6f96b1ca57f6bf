"""Redis journal: accepted messages go to a Stream; writers in a consumer group drain it in batches.

A message is acked once XADD returns, so it survives a crash of this process and a database
outage. Each process runs one consumer; entries a dead consumer had read but not stored are
reclaimed with XAUTOCLAIM after `claim_idle_ms`. Inserts are idempotent, so a replay is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from kefu.journal.base import JournalUnavailable, write_until_stored
from kefu.protocol import Message
from kefu.store.messages import MessageStore

log = logging.getLogger(__name__)
GROUP = "writers"
PENDING_SCAN_MAX = 100_000


class RedisJournal:
    def __init__(self, redis: Redis, prefix: str, store: MessageStore, batch: int, max_backoff: float,
                 claim_idle_ms: int) -> None:
        self.redis = redis
        self.stream = f"{prefix}journal"
        self.store = store
        self.batch = batch
        self.max_backoff = max_backoff
        self.claim_idle_ms = claim_idle_ms
        self.consumer = f"w-{uuid.uuid4().hex[:12]}"
        self._stopping = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._task = asyncio.create_task(self._run())

    async def append(self, m: Message) -> None:
        if self._closed:
            raise JournalUnavailable("shutting down")
        try:
            await self.redis.xadd(self.stream, {"m": json.dumps(m.to_wire(), ensure_ascii=False)})
        except RedisError as e:
            raise JournalUnavailable(str(e)) from e

    async def pending(self, openid: str | None, after: int) -> list[Message]:
        out: list[Message] = []
        start, seen = "-", 0
        while seen < PENDING_SCAN_MAX:
            entries = await self.redis.xrange(self.stream, min=start, count=1000)
            if not entries:
                break
            for _, fields in entries:
                m = Message.from_wire(json.loads(fields[b"m"]))
                if m.id > after and openid in (None, m.openid):
                    out.append(m)
            seen += len(entries)
            start = "(" + entries[-1][0].decode()
        return out

    async def _run(self) -> None:
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                entries = []
                if loop.time() >= next_claim:
                    # Take over what consumers that died had read but not stored.
                    _, entries, _ = await self.redis.xautoclaim(
                        self.stream, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch)
                    next_claim = loop.time() + max(0.5, self.claim_idle_ms / 2000)
                if not entries:
                    res = await self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                                      count=self.batch, block=500)
                    entries = res[0][1] if res else []
                if entries:
                    await self._store(entries)
            except asyncio.CancelledError:
                raise
            except RedisError as e:
                log.warning("journal read failed (%s); retrying", e)
                await asyncio.sleep(0.5)

    async def _store(self, entries: list) -> None:
        ids = [eid for eid, _ in entries]
        batch = [Message.from_wire(json.loads(f[b"m"])) for _, f in entries if f]
        if not await write_until_stored(self.store, batch, self.max_backoff, self._stopping):
            return  # stopping with the database down: entries stay pending for the next writer
        async with self.redis.pipeline(transaction=True) as p:
            p.xack(self.stream, GROUP, *ids)
            p.xdel(self.stream, *ids)
            await p.execute()

    async def stop(self, timeout: float) -> None:
        self._closed = True
        if self._task is None:
            return
        # Drain what is already in the stream, bounded by the timeout, then stop.
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            info = await self.redis.xinfo_groups(self.stream)
            group = next((g for g in info if g["name"] in (GROUP, GROUP.encode())), None)
            if not group or (group.get("lag") in (0, None) and group["pending"] == 0):
                break
            await asyncio.sleep(0.1)
        self._stopping.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
