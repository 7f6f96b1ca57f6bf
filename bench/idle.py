"""Idle sockets: connects per second, then memory per socket.

`sockets` mini-program users log in first (not timed); then their v2 chat sockets connect,
`connect_concurrency` handshakes in flight at a time, each counted when its `hello` arrives:
connects/s. With all of them open and silent, the server's resident memory (RSS) minus its RSS
before the first connect, divided by the sockets, is the memory one idle socket costs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from bench.common import gather_limited, rss_kib
from bench.result import RunResult
from bench.targets import HOST, Target
from bench.wire import WsClient, close_all, ws_connect


@dataclass
class IdleOptions:
    sockets: int = 2000
    connect_concurrency: int = 50
    settle: float = 1.0
    timeout: float = 120.0


async def run(target: Target, o: IdleOptions, repeat: int) -> RunResult:
    tokens = await target.user_tokens(o.sockets)
    await asyncio.sleep(o.settle)
    rss_before = rss_kib(target.pid)

    async def chat(i: int) -> WsClient:
        c = await ws_connect(HOST, target.port, target.chat_path.format(token=tokens[i]))
        hello = json.loads(await c.recv())
        if hello.get("cmd") != "hello":
            raise RuntimeError(f"{target.label}: expected hello, got {hello}")
        return c

    with target.meter() as meter:
        clients = await asyncio.wait_for(gather_limited(o.sockets, o.connect_concurrency, chat), o.timeout)
    await asyncio.sleep(o.settle)
    rss_after = rss_kib(target.pid)
    closed_early = sum(1 for c in clients if c.closed.done())
    await close_all(clients)
    usage = meter.usage
    assert usage is not None
    return RunResult("idle", target.key, target.label, repeat, usage, {
        "connects_per_s": o.sockets / usage.wall,
        "rss_kib_per_socket": (rss_after - rss_before) / o.sockets,
        "rss_mib_before": rss_before / 1024, "rss_mib_after": rss_after / 1024,
    }, {"closed_early": closed_early})
