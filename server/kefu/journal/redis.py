"""Redis journal: one script makes a message durable, dedupes it and relays it; each node stores
its own messages from memory; orphans of dead nodes are recovered from the stream.

The durability point is `ACCEPT`, one Lua script per batch of messages, so for each message these
happen atomically or not at all (Redis runs a script alone, and AOF logs its effects as one
transaction): check that Redis is the one kefu restored last (`run_id`), allocate the next id inside
the id lease, look up the cmid, append the message to the `journal` stream, record the cmid, and
PUBLISH it to its audiences. A duplicate's ack therefore always names a message that is durable,
and a message is relayed only once it is durable.

The accepting node keeps each message in memory until its own writer has committed it to the
database, then deletes the stream entry. The stream is for crash recovery and for `sync`: a node
that dies leaves its entries behind, and any node stores entries older than
KEFU_WRITER_CLAIM_IDLE_MS (inserts are keyed by id, so storing one twice is harmless).

Ids never repeat or go backwards, even across Redis losing its data: the counter may only move
inside a lease whose upper end is first written to the database (`kefu_meta.id_hwm`). When the
script finds Redis restarted or emptied (its `run_id` is not the one recorded), accepts wait while
one node restores: the counter from max(stored ids, lease), the cmid records of the dedupe window
from the database if they are gone, and every node puts its still-unstored messages back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kefu import jsonio, metrics
from kefu.broker.redis import channel_key
from kefu.core.routing import audiences, conversation_channels, message_envelope, resync_envelope
from kefu.core.session import Accepted
from kefu.errors import Unavailable, is_infrastructure
from kefu.journal.base import Journal, Snapshot, counts_agents, wire_tail, write_until_stored
from kefu.protocol import Message
from kefu.store.messages import MessageStore

log = logging.getLogger(__name__)

LEASE = 100_000  # ids per lease: how many messages kefu can accept while the database is down
SNAPSHOT_MAX = 10_000  # a journal longer than this (the database is down) makes sync `unavailable`

_RUN_ID = "local rid = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')\n"

# KEYS: counter, lease limit, stream, run-id record. ARGV: n, dedupe ttl, then 9 per message:
# cmid key ('' = none), ts, openid, wire tail, envelope head, envelope tail, user channel,
# agents channel, sender ('u' | 'a').
_ACCEPT = _RUN_ID + """
if redis.call('GET', KEYS[4]) ~= rid then return {'RESTORE'} end
local n = tonumber(ARGV[1])
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(redis.call('GET', KEYS[2]) or '0')
if counter + n > limit then return {'LEASE'} end
local out = {'OK', 0}
for i = 0, n - 1 do
  local b = 2 + i * 9
  local ck = ARGV[b + 1]
  local seen = false
  if ck ~= '' then seen = redis.call('GET', ck) end
  if seen then
    out[#out + 1] = {0, seen}
  else
    counter = counter + 1
    local id = string.format('%d', counter)
    local mj = '{"id":' .. id .. ',' .. ARGV[b + 4]
    local env = ARGV[b + 5] .. mj .. ARGV[b + 6]
    local u = 0
    if ARGV[b + 7] ~= '' then u = redis.call('PUBLISH', ARGV[b + 7], env) end
    local a = redis.call('PUBLISH', ARGV[b + 8], env)
    local d = 0
    if (ARGV[b + 9] == 'u' and a > 0) or (ARGV[b + 9] == 'a' and u > 0) then d = 1 end
    local eid = redis.call('XADD', KEYS[3], '*', 'i', id, 'o', ARGV[b + 3], 'm', mj, 'd', d)
    if ck ~= '' then redis.call('SET', ck, id .. ':' .. ARGV[b + 2] .. ':' .. d, 'EX', ARGV[2]) end
    out[#out + 1] = {1, id, eid, d}
  end
end
redis.call('SET', KEYS[1], string.format('%d', counter))
out[2] = limit - counter
return out
"""

# KEYS: counter, stream, run-id record. ARGV: openid ('' = every conversation), after, max length.
_SNAPSHOT = _RUN_ID + """
if redis.call('GET', KEYS[3]) ~= rid then return {'RESTORE'} end
if redis.call('XLEN', KEYS[2]) > tonumber(ARGV[3]) then return {'BIG'} end
local out = {'OK', redis.call('GET', KEYS[1]) or '0'}
local after = tonumber(ARGV[2])
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local f = e[2]
  if tonumber(f[2]) > after and (ARGV[1] == '' or f[4] == ARGV[1]) then out[#out + 1] = f[6] end
end
return out
"""

# KEYS: counter, lease limit, state marker, run-id record. ARGV: the id floor from the database.
_FINISH_RESTORE = _RUN_ID + """
local c = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', c))
redis.call('SET', KEYS[2], string.format('%d', c))
redis.call('SET', KEYS[3], '1')
redis.call('SET', KEYS[4], rid)
return c
"""

# KEYS: lease limit. ARGV: the new upper end (already in the database).
_RAISE_LIMIT = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: stream. ARGV: dedupe ttl, then 6 per message: id, openid, wire json, delivered, cmid key, ts.
_REAPPEND = """
local out = {}
for i = 0, (#ARGV - 1) / 6 - 1 do
  local b = 1 + i * 6
  out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'i', ARGV[b + 1], 'o', ARGV[b + 2], 'm', ARGV[b + 3],
                             'd', ARGV[b + 4])
  if ARGV[b + 5] ~= '' then
    local v = ARGV[b + 1] .. ':' .. ARGV[b + 6] .. ':' .. ARGV[b + 4]
    redis.call('SET', ARGV[b + 5], v, 'EX', ARGV[1], 'NX')
  end
end
return out
"""


@dataclass(slots=True)
class Unstored:
    """A message this node accepted and has not stored yet; `entry` is its stream entry id."""

    message: Message
    delivered: bool
    entry: str


@dataclass(slots=True)
class _Intake:
    draft: Message  # id 0 until the script allocates one
    origin: str
    future: asyncio.Future[Accepted]


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _entry_message(fields: dict[bytes | str, bytes | str]) -> tuple[Message, bool]:
    return Message.from_wire(jsonio.load_object(fields[b"m"])), fields.get(b"d") == b"1"


class RedisJournal(Journal):
    def __init__(self, redis: Redis, prefix: str, store: MessageStore, batch: int, max_backoff: float,
                 claim_idle_ms: int, dedupe_ttl: int, max_pending: int = 100_000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.store = store
        self.batch = batch
        self.max_backoff = max_backoff
        self.claim_idle_ms = claim_idle_ms
        self.dedupe_ttl = dedupe_ttl
        self.max_pending = max_pending
        self.node = uuid.uuid4().hex[:12]
        self.counter = f"{prefix}msgid"
        self.limit = f"{prefix}msgid:limit"
        self.stream = f"{prefix}journal"
        self.run_id = f"{prefix}runid"
        self.state = f"{prefix}state"
        self._accept = redis.register_script(_ACCEPT)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._finish = redis.register_script(_FINISH_RESTORE)
        self._raise_limit = redis.register_script(_RAISE_LIMIT)
        self._reappend_script = redis.register_script(_REAPPEND)
        self._intake: list[_Intake] = []
        self._intake_wake = asyncio.Event()
        self._unstored: list[Unstored] = []
        self._writer_wake = asyncio.Event()
        self._all_stored = asyncio.Event()
        self._all_stored.set()
        self._restoring = asyncio.Lock()
        self._renewing: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []

    def _cmid_key(self, sender_key: str, cmid: str | None) -> str:
        """Where a sender's cmid is recorded ('' for a message without one)."""
        return f"{self.prefix}cmid:{sender_key}:{cmid}" if cmid is not None else ""

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._ensure_current()
        self._tasks = [asyncio.create_task(self._run_intake()), asyncio.create_task(self._run_writer()),
                       asyncio.create_task(self._run_recovery())]

    async def stop(self, timeout: float) -> None:
        """Refuse new messages, store what this node accepted (bounded by `timeout`), then stop.
        Whatever is left stays in the stream and is recovered by the next node to look."""
        self._closed = True
        for item in self._intake:
            if not item.future.done():
                item.future.set_exception(Unavailable("server shutting down; resend it"))
        self._intake.clear()
        self._writer_wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_stored.wait(), timeout)
        if self._unstored:
            log.warning("shutdown: %d accepted messages left in the journal for another node to store",
                        len(self._unstored))
        self._stopping.set()
        self._writer_wake.set()
        tasks = [*self._tasks, *([self._renewing] if self._renewing else [])]
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=5)

    # ---- accepting -----------------------------------------------------------------------------

    def submit(self, draft: Message, origin: str) -> asyncio.Future[Accepted]:
        if self._closed or len(self._unstored) + len(self._intake) >= self.max_pending:
            raise Unavailable("the server is shutting down or cannot store messages now; resend later")
        fut: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._intake.append(_Intake(draft, origin, fut))
        self._intake_wake.set()
        return fut

    async def _run_intake(self) -> None:
        """One script call at a time; whatever arrives meanwhile goes into the next one."""
        while True:
            await self._intake_wake.wait()
            self._intake_wake.clear()
            while self._intake:
                batch, self._intake = self._intake[: self.batch], self._intake[self.batch:]
                try:
                    await self._accept_batch(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    if not is_infrastructure(e) and not isinstance(e, Unavailable):
                        log.exception("accepting %d messages failed", len(batch))
                    err = e if isinstance(e, Unavailable) else Unavailable("message not accepted, resend it")
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(err)

    def _args(self, batch: Sequence[_Intake]) -> list[str | int]:
        args: list[str | int] = [len(batch), self.dedupe_ttl]
        for item in batch:
            d = item.draft
            m = d  # id 0: the script splices the real id in
            env = message_envelope(m, item.origin)
            user_ch, agents_ch = audiences(m)
            args += [self._cmid_key(d.sender_key, d.cmid), d.ts,
                     d.openid, wire_tail(d), env.head(), env.tail(),
                     channel_key(self.prefix, user_ch) if user_ch else "",
                     channel_key(self.prefix, agents_ch), "u" if counts_agents(m) else "a"]
        return args

    async def _accept_batch(self, batch: list[_Intake]) -> None:
        args = self._args(batch)
        for _ in range(5):
            res = await self._accept(keys=[self.counter, self.limit, self.stream, self.run_id], args=args)
            status = _text(res[0])
            if status == "RESTORE":
                await self._restore()
            elif status == "LEASE":
                await self._renew_lease()
            else:
                break
        else:
            raise Unavailable("ids cannot be allocated right now; resend later")
        if int(res[1]) < LEASE // 2 and (self._renewing is None or self._renewing.done()):
            self._renewing = asyncio.create_task(self._renew_quietly())
        for item, r in zip(batch, res[2:], strict=True):
            d = item.draft
            if int(r[0]) == 1:
                m = d.with_id(int(r[1]))
                delivered = int(r[3]) == 1
                self._unstored.append(Unstored(m, delivered, _text(r[2])))
                self._all_stored.clear()
                metrics.JOURNAL_PENDING.inc()
                item.future.set_result(Accepted(m, delivered))
            else:
                msg_id, ts, flag = _text(r[1]).split(":")
                item.future.set_result(Accepted(d.with_id(int(msg_id), int(ts)), flag == "1", dup=True))
        self._writer_wake.set()

    # ---- the id lease and restoring a Redis that restarted or lost its data --------------------

    async def _renew_lease(self) -> None:
        """Write the next lease's upper end to the database first, then let Redis use it."""
        cur = int(await self.redis.get(self.counter) or 0)
        lim = int(await self.redis.get(self.limit) or 0)
        upto = max(cur, lim) + LEASE
        await self.store.raise_id_lease(upto)
        await self._raise_limit(keys=[self.limit], args=[upto])

    async def _renew_quietly(self) -> None:
        try:
            await self._renew_lease()
        except Exception as e:  # the next accept that needs it tries again, and says so
            log.warning("renewing the id lease failed (%s); retrying when it runs out", e)

    async def _current(self) -> bool:
        info = await self.redis.info("server")
        return _text(await self.redis.get(self.run_id) or b"") == str(info.get("run_id"))

    async def _ensure_current(self) -> None:
        """At start: restore Redis if needed, and hold a lease, so a database outage right after
        the start does not stop messages from being accepted."""
        if not await self._current():
            await self._restore()
        cur = int(await self.redis.get(self.counter) or 0)
        if int(await self.redis.get(self.limit) or 0) - cur < LEASE // 2:
            await self._renew_lease()

    async def _restore(self) -> None:
        async with self._restoring:
            if await self._current():
                return  # another task of this node, or another node, did it meanwhile
            metrics.REDIS_RESTORES.inc()
            log.warning("Redis was restarted or lost its data: restoring ids and dedupe before accepting")
            await self._reappend()
            lock = f"{self.prefix}restore:lock"
            if not await self.redis.set(lock, self.node, nx=True, px=60_000):
                for _ in range(300):  # another node restores; wait for it (bounded)
                    await asyncio.sleep(0.1)
                    if await self._current():
                        return
                raise Unavailable("Redis is being restored; resend later")
            try:
                floor = await self.store.id_floor()
                if not await self.redis.exists(self.state):
                    await self._restore_cmids()
                c = await self._finish(keys=[self.counter, self.limit, self.state, self.run_id], args=[floor])
                log.warning("Redis restored: ids continue above %s", c)
            finally:
                with contextlib.suppress(RedisError):
                    if _text(await self.redis.get(lock) or b"") == self.node:
                        await self.redis.delete(lock)

    async def _restore_cmids(self) -> None:
        """Dedupe records of the window, from the database (Redis kept none)."""
        now = int(time.time() * 1000)
        restored = 0
        async for page in self.store.recent_cmids(now - self.dedupe_ttl * 1000):
            async with self.redis.pipeline(transaction=False) as p:
                for key, cmid, e in page:
                    ttl = self.dedupe_ttl - (now - e.ts) // 1000
                    if ttl > 0:
                        p.set(self._cmid_key(key, cmid), f"{e.id}:{e.ts}:{int(e.delivered)}",
                              ex=ttl, nx=True)
                        restored += 1
                await p.execute()
        log.info("restored %d dedupe records from the database", restored)

    async def _reappend(self) -> None:
        """Put this node's unstored messages back into the stream (Redis may have lost them), and
        tell their audiences to sync from the lowest: a client may have synced past them meanwhile."""
        pending = list(self._unstored)
        if not pending:
            return
        for i in range(0, len(pending), 500):
            chunk = pending[i:i + 500]
            args: list[str | int] = [self.dedupe_ttl]
            for u in chunk:
                m = u.message
                args += [m.id, m.openid, jsonio.dumps(m.to_wire()), int(u.delivered),
                         self._cmid_key(m.sender_key, m.cmid), m.ts]
            entries = await self._reappend_script(keys=[self.stream], args=args)
            for u, eid in zip(chunk, entries, strict=True):
                u.entry = _text(eid)
        low = min(u.message.id for u in pending) - 1
        env = resync_envelope(low).dumps()
        channels = {ch for u in pending for ch in conversation_channels(u.message.openid)}
        async with self.redis.pipeline(transaction=False) as p:
            for ch in sorted(channels):
                p.publish(channel_key(self.prefix, ch), env)
            await p.execute()
        log.warning("put %d unstored messages back into the journal", len(pending))

    # ---- storing -------------------------------------------------------------------------------

    async def _run_writer(self) -> None:
        while not self._stopping.is_set():
            await self._writer_wake.wait()
            self._writer_wake.clear()
            while self._unstored:
                chunk = self._unstored[: self.batch]
                rows = [(u.message, u.delivered) for u in chunk]
                written = await write_until_stored(partial(self.store.write, rows), len(rows),
                                                   self.max_backoff, self._stopping)
                if written is None:
                    return
                del self._unstored[: len(chunk)]
                metrics.JOURNAL_PENDING.dec(len(chunk))
                if not self._unstored:
                    self._all_stored.set()
                with contextlib.suppress(RedisError, OSError):  # left behind: recovery deletes it later
                    await self.redis.xdel(self.stream, *[u.entry for u in chunk])

    async def _run_recovery(self) -> None:
        """Store entries older than the claim time: their node died (or is very late, in which
        case storing them twice is harmless). One node at a time does it."""
        period = max(0.5, self.claim_idle_ms / 2000)
        lock = f"{self.prefix}recover:lock"
        while True:
            await asyncio.sleep(period)
            try:
                if not await self.redis.set(lock, self.node, nx=True, px=max(1000, self.claim_idle_ms)):
                    continue
                try:
                    await self._recover_once()
                finally:
                    if _text(await self.redis.get(lock) or b"") == self.node:
                        await self.redis.delete(lock)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not is_infrastructure(e):
                    log.exception("journal recovery failed")
                else:
                    log.warning("journal recovery failed (%s); retrying", e)

    async def _recover_once(self) -> None:
        secs, micros = await self.redis.time()
        cutoff = int(secs) * 1000 + int(micros) // 1000 - self.claim_idle_ms
        while True:
            entries = await self.redis.xrange(self.stream, min="-", max=str(cutoff), count=self.batch)
            if not entries:
                return
            rows = [_entry_message(f) for _, f in entries if f]
            await self.store.write(rows)
            await self.redis.xdel(self.stream, *[eid for eid, _ in entries if eid is not None])
            log.info("recovered %d journal entries left by a node that stopped", len(entries))
            if len(entries) < self.batch:
                return

    # ---- reading -------------------------------------------------------------------------------

    async def snapshot(self, openid: str | None, after: int) -> Snapshot:
        for _ in range(3):
            res = await self._snapshot(keys=[self.counter, self.stream, self.run_id],
                                       args=[openid or "", after, SNAPSHOT_MAX])
            status = _text(res[0])
            if status == "RESTORE":
                await self._restore()
                continue
            if status == "BIG":
                raise Unavailable("the database is catching up with the journal; retry later")
            by_id = {m.id: m for m in (Message.from_wire(jsonio.load_object(raw)) for raw in res[2:])}
            return Snapshot(cap=int(res[1]), pending=sorted(by_id.values(), key=lambda m: m.id))
        raise Unavailable("Redis is being restored; retry later")
