"""Push-port benchmark: backends push to bound QR pages over the TCP text port, PHP-style.

    .venv/bin/python bench/push.py                       # embedded default (in-process broker)
    .venv/bin/python bench/push.py --backend redis_mysql # Redis pub/sub
    .venv/bin/python bench/push.py --pages 200 --backends 4 --lines 5000 --window 50

`--pages` QR pages (sandbox QR codes) bind over /ws/qr; `--backends` TCP connections each send
`--lines` JSON lines (`{"uid","ticket","t"}`) to random pages, `--window` lines in flight at a time
(pipelining; `--window 1` is the classic fwrite-then-fread). Reports replies per second, reply
latency (line written → `ok` read) and delivery latency (line written → the page's socket).
Every loop is bounded; the server runs on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import httpx
import websockets
from common import BACKENDS, bench_server, pct
from tests.support.server import free_port


async def run(args: argparse.Namespace) -> dict:
    port = free_port()
    with bench_server(args.backend, KEFU_PUSH_PORT=str(port)) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            codes = [(await http.get("/qrcode")).json() for _ in range(args.pages)]
        pages = []
        for qr in codes:
            ws = await websockets.connect(srv.ws_url + "/qr")
            bind = {k: qr[k] for k in ("ticket", "expire_seconds", "uid")}
            await ws.send(json.dumps(bind))
            assert json.loads(await ws.recv()) == bind, "the bind echo"
            pages.append(ws)

        total = args.backends * args.lines
        delivered: list[float] = []
        replies: list[float] = []
        fails = 0
        all_in = asyncio.Event()

        async def page_reader(ws) -> None:  # type: ignore[no-untyped-def]
            async for raw in ws:
                delivered.append(time.perf_counter() - json.loads(raw)["t"])
                if len(delivered) == total:
                    all_in.set()

        async def backend(seed: int) -> None:
            nonlocal fails
            rng = random.Random(seed)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for start in range(0, args.lines, args.window):
                batch = range(start, min(start + args.window, args.lines))
                sent = []
                for _ in batch:
                    qr = rng.choice(codes)
                    sent.append(time.perf_counter())
                    line = {"uid": qr["uid"], "ticket": qr["ticket"], "t": sent[-1]}
                    writer.write(json.dumps(line).encode() + b"\n")
                await writer.drain()
                for t in sent:
                    reply = await reader.readline()
                    replies.append(time.perf_counter() - t)
                    fails += reply != b"ok\n"
            writer.close()

        readers = [asyncio.create_task(page_reader(p)) for p in pages]
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(backend(i) for i in range(args.backends))), args.timeout)
        replied = time.perf_counter() - t0
        await asyncio.wait_for(all_in.wait(), args.timeout)
        for r in readers:
            r.cancel()
        for p in pages:
            await p.close()
        return {
            "backend": args.backend, "pages": args.pages, "connections": args.backends,
            "window": args.window, "lines": total, "fail_replies": fails,
            "seconds": round(replied, 2), "lines_per_sec": round(total / replied),
            "reply_ms_p50": round(pct(replies, 0.50), 2), "reply_ms_p99": round(pct(replies, 0.99), 2),
            "delivery_ms_p50": round(pct(delivered, 0.50), 2),
            "delivery_ms_p99": round(pct(delivered, 0.99), 2),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=BACKENDS, default="embedded")
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--backends", type=int, default=4, help="TCP connections")
    p.add_argument("--lines", type=int, default=5000, help="per connection")
    p.add_argument("--window", type=int, default=50, help="lines in flight per connection")
    p.add_argument("--timeout", type=float, default=300)
    print(json.dumps(asyncio.run(run(p.parse_args())), indent=2))


if __name__ == "__main__":
    main()
