"""Relay: users send to agents, closed loop, and every acknowledged message is checked.

`users` v2 user sockets each send one message with a `cmid`, wait for its ack, and send the next
(closed loop: the server's speed sets the pace), for `seconds` or `max_per_user` messages; `agents`
v2 agent sockets (one account) receive every message. Delivered/s is messages acked and relayed
per second of the load phase; relay latency is send → an agent's socket, ack latency send → the
sender's ack (on kefu: durable, committed or in the Redis Stream).

The guarantees are counted, not assumed: *lost* is a message sent but never acked, an acked message
an agent never got, or (kefu) an acked message with no row; *duplicated* is a message an agent got
twice, a cmid acked with two ids, or two rows for one cmid; *stored once* holds when every acked
message has exactly one row with its id, cmid and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from dataclasses import dataclass

from bench.common import gather_limited, pct
from bench.result import RunResult
from bench.targets import HOST, StoredRow, Target
from bench.wire import WsClient, close_all, ws_connect


@dataclass
class RelayOptions:
    users: int = 200
    agents: int = 2
    seconds: float = 5.0
    max_per_user: int = 2000
    connect_concurrency: int = 50
    store_timeout: float = 60.0
    timeout: float = 60.0


def body(cmid: str) -> str:
    return f"bench {cmid} 你好 😀"


# The generator reads its own frames back: a few string searches instead of a JSON parse keep it
# far from saturating its core (the bodies and cmids it sends contain no quotes or escapes).

def string_field(raw: bytes, key: bytes) -> str | None:
    i = raw.find(key)
    if i < 0:
        return None
    start = raw.find(b'"', i + len(key))
    end = raw.find(b'"', start + 1)
    return raw[start + 1:end].decode() if start >= 0 and end > start else None


def int_field(raw: bytes, key: bytes) -> int | None:
    i = raw.find(key)
    if i < 0:
        return None
    j = i + len(key)
    while raw[j:j + 1] == b" ":
        j += 1
    k = j
    while raw[k:k + 1].isdigit():
        k += 1
    return int(raw[j:k]) if k > j else None


class Ledger:
    """What the generator sent, what was acked and what each agent saw."""

    def __init__(self, agents: int) -> None:
        self.sent_at: dict[str, float] = {}
        self.acked: dict[str, int] = {}
        self.ack_conflicts = 0
        self.errors: Counter[str] = Counter()
        self.seen: list[Counter[str]] = [Counter() for _ in range(agents)]
        self.relay_s: list[float] = []
        self.ack_s: list[float] = []
        self.received = 0
        self.users_done = 0
        self.expected_receipts = 0  # set once every user is done
        self.all_received = asyncio.Event()

    def on_agent_frame(self, agent: int, raw: bytes) -> None:
        if b'"cmd"' in raw or b'"msg"' not in raw:
            return  # not a relayed message (a read receipt, a pong, a desk update)
        cmid = string_field(raw, b'"cmid":')
        if cmid is None:
            return  # a message without a cmid is not one of the generator's (a status event)
        self.seen[agent][cmid] += 1
        at = self.sent_at.get(cmid)
        if at is not None:
            self.relay_s.append(time.perf_counter() - at)
        self.received += 1
        if self.expected_receipts and self.received >= self.expected_receipts:
            self.all_received.set()


class User:
    """One closed-loop sender, driven by its socket's frames (no task per user)."""

    def __init__(self, i: int, client: WsClient, ledger: Ledger, o: RelayOptions,
                 finished: asyncio.Event, users: int) -> None:
        self.i, self.client, self.ledger, self.o = i, client, ledger, o
        self.finished, self.users = finished, users
        self.k = 0
        self.stop_at = 0.0
        self.pending: str | None = None
        client.on_text = self.on_text

    def start(self, stop_at: float) -> None:
        self.stop_at = stop_at
        self.send_next()

    def send_next(self) -> None:
        now = time.perf_counter()
        if self.k >= self.o.max_per_user or now >= self.stop_at:
            self.done()
            return
        cmid = f"{self.i}-{self.k}"
        self.k += 1
        self.pending = cmid
        self.ledger.sent_at[cmid] = now
        self.client.send_text(f'{{"type":2,"msg":"{body(cmid)}","cmid":"{cmid}"}}'.encode())

    def on_text(self, raw: bytes) -> None:
        led = self.ledger
        ack = b'"cmd": "ack"' in raw or b'"cmd":"ack"' in raw
        cmid = string_field(raw, b'"cmid":') if ack else None
        msg_id = int_field(raw, b'"id":') if ack else None
        if cmid is None or msg_id is None:  # not an ack in the expected shape: read it properly
            f = json.loads(raw)
            if f.get("cmd") == "error":
                led.errors[str(f.get("code"))] += 1
                self.pending = None
                self.done()
            if f.get("cmd") != "ack":
                return
            cmid, msg_id = f["cmid"], f["id"]
        if cmid in led.acked:
            led.ack_conflicts += led.acked[cmid] != msg_id
        elif cmid == self.pending:
            led.acked[cmid] = msg_id
            led.ack_s.append(time.perf_counter() - led.sent_at[cmid])
            self.pending = None
            self.send_next()

    def done(self) -> None:
        self.stop_at = 0.0
        self.ledger.users_done += 1
        if self.ledger.users_done == self.users:
            self.finished.set()


def ours(led: Ledger, rows: list[StoredRow]) -> list[StoredRow]:
    """The rows of messages the generator sent; the server writes others of its own (a
    conversation's status events, without a cmid)."""
    return [r for r in rows if r.cmid is not None and r.cmid in led.sent_at]


def store_checks(led: Ledger, rows: list[StoredRow]) -> dict[str, int | str]:
    """Every acked message stored exactly once, with its id, cmid and body."""
    mine = ours(led, rows)
    by_id = {r.id: r for r in mine}
    per_cmid = Counter(r.cmid for r in mine)
    missing = sum(1 for cmid, i in led.acked.items()
                  if i not in by_id or by_id[i].cmid != cmid or by_id[i].body != body(cmid))
    dup_rows = sum(n - 1 for n in per_cmid.values() if n > 1)
    return {"rows": len(mine), "server_rows": len(rows) - len(mine), "store_missing": missing,
            "store_duplicates": dup_rows, "stored_once": "yes" if not missing and not dup_rows else "NO"}


async def wait_stored(target: Target, led: Ledger, timeout: float) -> list[StoredRow]:
    """All rows, once the writer has stored as many of ours as were acked (or at the deadline)."""
    deadline = time.monotonic() + timeout
    rows = await asyncio.to_thread(target.stored)
    while len(ours(led, rows)) < len(led.acked) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        rows = await asyncio.to_thread(target.stored)
    return rows


async def run(target: Target, o: RelayOptions, repeat: int) -> RunResult:
    agent_token = await target.agent_token()
    tokens = await target.user_tokens(o.users)

    async def chat(token: str) -> WsClient:
        c = await ws_connect(HOST, target.port, target.chat_path.format(token=token))
        hello = json.loads(await c.recv())
        if hello.get("cmd") != "hello":
            raise RuntimeError(f"{target.label}: expected hello, got {hello}")
        return c

    agents = [await chat(agent_token) for _ in range(o.agents)]
    users_ws = await asyncio.wait_for(
        gather_limited(o.users, o.connect_concurrency, lambda i: chat(tokens[i])), o.timeout)
    led = Ledger(o.agents)
    for a, c in enumerate(agents):
        c.on_text = functools.partial(led.on_agent_frame, a)
    finished = asyncio.Event()
    users = [User(i, c, led, o, finished, o.users) for i, c in enumerate(users_ws)]

    with target.meter() as meter:
        stop_at = time.perf_counter() + o.seconds
        for u in users:
            u.start(stop_at)
        await asyncio.wait_for(finished.wait(), o.seconds + o.timeout)
        led.expected_receipts = len(led.acked) * o.agents
        if led.received < led.expected_receipts:
            with contextlib.suppress(TimeoutError):  # what never came is counted as lost below
                await asyncio.wait_for(led.all_received.wait(), o.timeout)
    usage = meter.usage
    assert usage is not None
    await close_all([*agents, *users_ws])

    not_acked = len(led.sent_at) - len(led.acked)
    relay_missing = sum(1 for seen in led.seen for cmid in led.acked if seen[cmid] == 0)
    relay_dups = sum(n - 1 for seen in led.seen for n in seen.values() if n > 1)
    checks: dict[str, int | str] = {"sent": len(led.sent_at), "acked": len(led.acked),
                                    "errors": sum(led.errors.values()), "not_acked": not_acked,
                                    "relay_missing": relay_missing, "relay_duplicates": relay_dups,
                                    "ack_conflicts": led.ack_conflicts}
    lost = not_acked + relay_missing
    dups = relay_dups + led.ack_conflicts
    if target.stores:
        checks |= store_checks(led, await wait_stored(target, led, o.store_timeout))
        lost += int(checks["store_missing"])
        dups += int(checks["store_duplicates"])
    checks |= {"lost": lost, "duplicated": dups}
    return RunResult("relay", target.key, target.label, repeat, usage, {
        "delivered_per_s": len(led.acked) / usage.wall,
        "relay_p50_ms": pct(led.relay_s, 0.50), "relay_p99_ms": pct(led.relay_s, 0.99),
        "ack_p50_ms": pct(led.ack_s, 0.50), "ack_p99_ms": pct(led.ack_s, 0.99),
    }, checks)
