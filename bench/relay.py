"""Relay benchmark: users send to agents through a real kefu server; reports latency, rate and memory.

    .venv/bin/python bench/relay.py                       # embedded default (SQLite + in-process)
    .venv/bin/python bench/relay.py --backend redis_mysql # Redis + MariaDB on 127.0.0.1
    .venv/bin/python bench/relay.py --users 500 --messages 20 --agents 2

Every loop is bounded (users × messages); the server runs on 127.0.0.1 and is stopped at the end.
Latency is send → the agent's socket receiving the frame; "acked" is send → the sender's ack
(durable: group commit for SQLite, Redis Stream for Redis). RSS is the server's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx
import websockets
from common import BACKENDS, bench_server, pct, rss_kib


async def run(args: argparse.Namespace) -> dict:
    with bench_server(args.backend) as srv:
        srv.create_agent("bench")
        rss_idle = rss_kib(srv.proc.pid)
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            login = await http.post("/api/agent/login", json={"name": "bench", "password": "correct-horse-1"})
            agent_token = login.json()["token"]
            user_tokens = [(await http.post("/api/login", json={"code": f"bench-{i}"})).json()["token"]
                           for i in range(args.users)]
        agents = [await websockets.connect(f"{srv.ws_url}?token={agent_token}&v=2", max_size=2**24)
                  for _ in range(args.agents)]
        users = [await websockets.connect(f"{srv.ws_url}?token={t}&v=2") for t in user_tokens]
        for ws in [*agents, *users]:
            await ws.recv()  # hello
        rss_connected = rss_kib(srv.proc.pid)

        total = args.users * args.messages
        sent_at: dict[str, float] = {}
        relay: list[float] = []
        acked: list[float] = []
        done = asyncio.Event()

        async def agent_reader(ws) -> None:  # type: ignore[no-untyped-def]
            seen = 0
            async for raw in ws:
                f = json.loads(raw)
                if "msg" in f and "cmd" not in f:
                    relay.append(time.perf_counter() - sent_at[f["cmid"]])
                    seen += 1
                    if seen == total:
                        done.set()
                        return

        async def user(i: int, ws) -> None:  # type: ignore[no-untyped-def]
            for k in range(args.messages):
                cmid = f"{i}-{k}"
                sent_at[cmid] = time.perf_counter()
                await ws.send(json.dumps({"msg": f"bench message {k} 你好 😀", "type": 2, "cmid": cmid}))
                while True:
                    f = json.loads(await ws.recv())
                    if f.get("cmd") == "error":
                        raise RuntimeError(f"server refused a message: {f}")
                    if f.get("cmd") == "ack":
                        acked.append(time.perf_counter() - sent_at[f["cmid"]])
                        break

        readers = [asyncio.create_task(agent_reader(a)) for a in agents]
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(user(i, ws) for i, ws in enumerate(users))), args.timeout)
        await asyncio.wait_for(done.wait(), args.timeout)
        elapsed = time.perf_counter() - t0
        rss_after = rss_kib(srv.proc.pid)
        for r in readers:
            r.cancel()
        for ws in [*agents, *users]:
            await ws.close()
        return {
            "backend": args.backend, "users": args.users, "agents": args.agents, "messages": total,
            "seconds": round(elapsed, 2), "msgs_per_sec": round(total / elapsed),
            "relay_ms_p50": round(pct(relay, 0.50), 2), "relay_ms_p99": round(pct(relay, 0.99), 2),
            "ack_ms_p50": round(pct(acked, 0.50), 2), "ack_ms_p99": round(pct(acked, 0.99), 2),
            "ack_ms_mean": round(statistics.mean(acked) * 1000, 2),
            "rss_mib_idle": round(rss_idle / 1024, 1), "rss_mib_connected": round(rss_connected / 1024, 1),
            "rss_mib_after": round(rss_after / 1024, 1),
            "rss_kib_per_socket": round((rss_connected - rss_idle) / (args.users + args.agents), 1),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=BACKENDS, default="embedded")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--messages", type=int, default=10, help="per user")
    p.add_argument("--timeout", type=float, default=120)
    print(json.dumps(asyncio.run(run(p.parse_args())), indent=2))


if __name__ == "__main__":
    main()
