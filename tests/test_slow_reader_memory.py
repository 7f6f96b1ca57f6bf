"""A logged-in client that asks for a lot and never reads must cost the server a bounded amount of
memory: its send queue is bounded in bytes (4503) and its frames in rate (`rate_limited`, then
4429), while every other socket carries on. Measured as the server process's RSS."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from tests.support.rawws import RawWs
from tests.support.wsclient import WsClient

BIG = 5000  # characters per seeded message (15 KB of UTF-8): a sync reply is ~256 KiB
RSS_BOUND_MIB = 40


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def seed(srv, token: str, n: int) -> None:  # type: ignore[no-untyped-def]
    user = await WsClient.connect(srv.ws_url, token)
    for i in range(n):
        await user.send({"msg": chr(0x4E00 + i) * BIG, "type": 2, "cmid": f"seed{i}"})
    for _ in range(n):
        await user.recv_until(lambda f: f.get("cmd") == "ack", timeout=30)
    await user.close()


def flood(raw: RawWs, rounds: int) -> None:
    """Small frames that each ask for a big or a small answer; never a byte read."""
    for i in range(rounds):
        raw.send_text('{"cmd":"sync","after":0}')
        raw.send_text('{"cmd":"read"}' if i % 2 else '{"cmd":"ping"}')
        for _ in range(10):
            raw.send_text('{"cmd":"ping"}')


async def test_a_client_that_never_reads_costs_bounded_memory(deployment):
    # A budget big enough that the byte-bounded send queue, not the rate, stops the first client.
    srv = deployment.server(KEFU_RATE_PER_SEC="1000", KEFU_RATE_BURST="1000")
    srv.create_agent("watcher")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("watcher"))
    token, _ = srv.user_token("hoarder")
    await seed(srv, token, 64)
    while (await agent.recv(timeout=10)).get("msg", "")[:1] != chr(0x4E00 + 63):
        pass
    other_token, other = srv.user_token("bystander")
    bystander = await WsClient.connect(srv.ws_url, other_token)
    await bystander.send({"cmd": "sync", "after": 0})  # warm: one sync reply built and sent
    assert (await bystander.recv())["cmd"] == "sync"
    pid = srv.proc.pid
    before = rss_mib(pid)

    raw = RawWs.connect(srv.port, f"/ws?token={token}&v=2", rcvbuf=4096)
    assert raw.status == 101
    sender = asyncio.create_task(asyncio.to_thread(flood, raw, 200))  # 2 400 frames, ~60 KB
    peak = before
    for i in range(20):  # ~2 s, while the flood goes on: others are served all along
        peak = max(peak, rss_mib(pid))
        await bystander.send({"msg": f"still served {i}", "type": 2, "cmid": f"b{i}"})
        assert (await bystander.recv_until(lambda f: f.get("cmd") == "ack"))["cmid"] == f"b{i}"
        assert (await agent.recv_until(lambda f: f.get("openid") == other))["msg"] == f"still served {i}"
        await asyncio.sleep(0.1)
    await sender
    peak = max(peak, rss_mib(pid))
    assert peak - before < RSS_BOUND_MIB, (before, peak)

    # The hoarder was closed as a slow consumer; reading now finds the close frame (or the cut).
    code, _ = await asyncio.to_thread(raw.read_until_close, 15)
    assert code in (4503, None), code
    raw.close()
    async with asyncio.timeout(10):
        while httpx.get(srv.base_url + "/healthz").json()["connections"] != 2:
            await asyncio.sleep(0.1)

    # With the default budget, a flood is refused frame by frame and ends in 4429 or 4503.
    await agent.send({"cmd": "ping"})
    assert (await agent.recv_until(lambda f: f.get("cmd") == "pong"))["cmd"] == "pong"
    srv2 = deployment.server(KEFU_PUSH_PORT="0", KEFU_DATA_DIR=str(deployment.tmp / "data2"))
    token2, _ = srv2.user_token("hoarder")
    raw2 = RawWs.connect(srv2.port, f"/ws?token={token2}&v=2", rcvbuf=4096)
    pid2, before2 = srv2.proc.pid, rss_mib(srv2.proc.pid)
    t0 = time.monotonic()
    with contextlib.suppress(OSError):  # closed while sending: that is the refusal
        await asyncio.to_thread(flood, raw2, 200)
    assert rss_mib(pid2) - before2 < RSS_BOUND_MIB
    code2, _ = await asyncio.to_thread(raw2.read_until_close, 15)
    assert code2 in (4429, 4503, None), code2
    assert time.monotonic() - t0 < 20
    raw2.close()
    await bystander.send({"cmd": "ping"})
    assert (await bystander.recv_until(lambda f: f.get("cmd") == "pong"))["cmd"] == "pong"
