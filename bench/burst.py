"""Connect storms: every socket at once, and what each one got.

    .venv/bin/python -m bench.burst                         # 5000 sockets, chat and QR pages, both backends
    .venv/bin/python -m bench.burst --sockets 2000 --repeats 3 --kinds chat --targets embedded

A restarted node sends all its clients back at the same moment; a promotion opens thousands of
mini-programs at once. Here `sockets` handshakes start together (no concurrency limit): chat sockets
(logged in beforehand, not timed) wait for their `hello`, QR pages (codes made beforehand) for their
bind echo. Every socket ends in exactly one outcome, so none can go unnoticed:

- `ok`: the hello or echo arrived;
- `refused <status>`: the handshake was answered with another HTTP status (429 is a socket cap);
- `closed <code>`: a close frame came first (a documented close code);
- `lost in handshake`: the TCP connection ended before the 101;
- `no 101`: TCP connected (as the client saw it) but no handshake answer came within `timeout` —
  what a full accept queue does: the kernel drops the connection's ACK and its data, and the
  client's retransmissions back off for tens of seconds;
- `connect <error>`: TCP connect failed;
- `silent`: the handshake completed and then nothing came within `timeout` — the failure the burst
  is there to catch.

connects/s is the sockets that got their hello or echo / the time until the last one did; the
table also gives the p50 and p99 of the time from the start of the storm to each socket's outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass

from bench.common import pct
from bench.targets import HOST, Target, started
from bench.wire import WsClient, WsClosed, close_all

KINDS = ("chat", "page")


@dataclass
class Storm:
    outcomes: Counter[str]
    ok_seconds: list[float]  # from the start of the storm to each `ok`, sorted

    @property
    def connects_per_s(self) -> float:
        return len(self.ok_seconds) / self.ok_seconds[-1] if self.ok_seconds else 0.0


async def _one(path: str, port: int, bind: bytes | None, expect: str, timeout: float,
               clients: list[WsClient]) -> str:
    loop = asyncio.get_running_loop()
    try:
        _, c = await asyncio.wait_for(
            loop.create_connection(lambda: WsClient(HOST, port, path), HOST, port), timeout)
    except (OSError, TimeoutError) as e:
        return f"connect {type(e).__name__}"
    clients.append(c)
    try:
        await asyncio.wait_for(c.opened, timeout)
    except WsClosed as e:
        text = str(e)
        return ("refused " + text.split()[3]) if text.startswith("handshake refused") else "lost in handshake"
    except TimeoutError:
        return "no 101"
    if bind is not None:
        c.send_text(bind)
    try:
        frame = json.loads(await c.recv(timeout))
    except WsClosed:
        return f"closed {c.close_code or 1006}"
    except TimeoutError:
        return "silent"
    got = frame.get("cmd") or frame.get("type") or "?"
    return "ok" if got == expect or (expect == "bind" and "uid" in frame) else f"unexpected {got}"


async def storm(target: Target, kind: str, sockets: int, timeout: float = 60.0) -> Storm:
    """`sockets` sockets of `kind` started at once on `target`; every one's outcome."""
    if kind == "chat":
        tokens = await target.user_tokens(sockets)
        paths = [target.chat_path.format(token=t) for t in tokens]
        binds: list[bytes | None] = [None] * sockets
        expect = "hello"
    else:
        pages = await target.qr_pages(sockets)
        paths = [target.page_path] * sockets
        binds = [p.bind for p in pages]
        expect = "bind"
    clients: list[WsClient] = []
    t0 = time.perf_counter()
    ok: list[float] = []

    async def timed(i: int) -> str:
        outcome = await _one(paths[i], target.port, binds[i], expect, timeout, clients)
        if outcome == "ok":
            ok.append(time.perf_counter() - t0)
        return outcome

    results = await asyncio.gather(*(timed(i) for i in range(sockets)))
    await close_all(clients)
    return Storm(Counter(results), sorted(ok))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--sockets", type=int, default=5000)
    p.add_argument("--kinds", type=csv, default=",".join(KINDS))
    p.add_argument("--targets", type=csv, default="embedded,redis_mysql")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds each socket may wait")
    p.add_argument("--kefu-env", action="append", default=[], metavar="KEFU_NAME=VALUE")
    return p.parse_args(argv)


async def main(a: argparse.Namespace) -> int:
    env = dict(kv.split("=", 1) for kv in a.kefu_env)
    failed = 0
    print(f"| target | kind | run | connects/s | ok after p50 / p99 / last, s | outcomes (of {a.sockets}) |\n"
          "|---|---|---|---:|---|---|")
    for key in a.targets:
        for kind in a.kinds:
            for n in range(a.repeats):
                async with started(key, "push" if kind == "page" else "idle", kefu_env=env) as t:
                    s = await storm(t, kind, a.sockets, a.timeout)
                failed += a.sockets - s.outcomes["ok"]
                shown = ", ".join(f"{k} {v}" for k, v in s.outcomes.most_common())
                times = " / ".join(f"{pct(s.ok_seconds, q) / 1000:.2f}" for q in (0.5, 0.99, 1.0))
                print(f"| {t.label} | {kind} | {n + 1} | {s.connects_per_s:.0f} | {times} | {shown} |",
                      flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
