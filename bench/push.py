"""Push, seed dialect: backends push to bound QR pages over the TCP text port, PHP-style.

`pages` QR pages connect to `/ws/qr` and bind with `{"ticket", "expire_seconds", "uid"}` (the
bind echo is awaited; page connects/s is measured here). Then `pushers` TCP connections each keep
`window` lines `{"uid","ticket","t"}` in flight (a sliding window: pipelining, as a busy PHP
backend does) to random pages, for `seconds` or until `max_lines` lines in all. Delivered/s is
pushes that reached their page per second of the load phase; delivery latency is line written →
the page's socket; reply latency is line written → `ok` read.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import Meter, gather_limited, pct
from bench.result import RunResult
from bench.targets import HOST, Target
from bench.wire import WsClient, close_all, push_connect, ws_connect


@dataclass
class PushOptions:
    pages: int = 1000
    pushers: int = 4
    window: int = 50
    seconds: float = 5.0
    max_lines: int = 400_000
    connect_concurrency: int = 50
    timeout: float = 60.0


def sent_time(frame: bytes) -> float:
    """The `t` a pushed frame carries; read without a JSON parse when it is the last key."""
    i = frame.rfind(b'"t":')
    if i >= 0:
        try:
            return float(frame[i + 4:frame.find(b"}", i)])
        except ValueError:
            pass
    return float(json.loads(frame)["t"])


async def run(target: Target, o: PushOptions, repeat: int) -> RunResult:
    assert target.push_port is not None
    pages = await target.qr_pages(o.pages)

    async def bind(i: int) -> WsClient:
        c = await ws_connect(HOST, target.port, target.page_path)
        c.send_text(pages[i].bind)
        echo = json.loads(await c.recv())
        if echo != json.loads(pages[i].bind):
            raise RuntimeError(f"{target.label}: the bind was answered with {echo}")
        return c

    with Meter(target.pid) as binding:  # page connects/s is a number too: its generator is checked
        clients = await asyncio.wait_for(gather_limited(o.pages, o.connect_concurrency, bind), o.timeout)
    assert binding.usage is not None
    page_connects = o.pages / binding.usage.wall

    delivered: list[float] = []
    all_in = asyncio.Event()
    expected = [0]  # set to the number of `ok` replies once the pushers are done

    def on_push(raw: bytes) -> None:
        delivered.append(time.perf_counter() - sent_time(raw))
        if expected[0] and len(delivered) >= expected[0]:
            all_in.set()

    for c in clients:
        c.on_text = on_push

    prefixes = [b'{"uid":"%s","ticket":"%s","t":' % (p.uid.encode(), p.ticket.encode()) for p in pages]
    per_pusher = o.max_lines // o.pushers
    rng = random.Random(repeat)

    def line_maker() -> Callable[[float], bytes | None]:
        made = [0]
        stop_at = time.perf_counter() + o.seconds

        def make(now: float) -> bytes | None:
            if made[0] >= per_pusher or now >= stop_at:
                return None
            made[0] += 1
            return rng.choice(prefixes) + repr(now).encode() + b"}\n"
        return make

    pushers = [await push_connect(HOST, target.push_port, line_maker(), o.window) for _ in range(o.pushers)]
    with target.meter() as meter:
        for p in pushers:
            p.start()
        await asyncio.wait_for(asyncio.gather(*(p.done for p in pushers)), o.seconds + o.timeout)
        expected[0] = sum(p.ok for p in pushers)
        if len(delivered) < expected[0]:
            await asyncio.wait_for(all_in.wait(), o.timeout)
    for p in pushers:
        assert p.transport is not None
        p.transport.close()
    await close_all(clients)
    usage = meter.usage
    assert usage is not None
    replies = [r for p in pushers for r in p.reply_s]
    lines, fails = len(replies), sum(p.fail for p in pushers)
    return RunResult("push", target.key, target.label, repeat, usage, {
        "delivered_per_s": len(delivered) / usage.wall,
        "delivery_p50_ms": pct(delivered, 0.50), "delivery_p99_ms": pct(delivered, 0.99),
        "reply_p50_ms": pct(replies, 0.50), "reply_p99_ms": pct(replies, 0.99),
        "page_connects_per_s": page_connects,
        "lines": lines, "fail_replies": fails,
    }, phases={"page connects": binding.usage})
