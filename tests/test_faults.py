"""Fault injection: nothing acked is lost, stored twice, or acked as a duplicate of nothing; ids
never repeat or go backwards; sync is exact — whatever fails.

Real `kefu serve` processes on loopback; Redis faults on a Redis server of the test's own (AOF on,
on a free port), MySQL outages through a TCP proxy in front of MariaDB. Clients keep ledgers
(tests/support/ledger.py) and behave as protocol.md says: resend unacked messages with the same cmid,
reconnect to the surviving node, sync. After each fault `check` holds every ledger against the rows
in the database. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import Deployment
from tests.support import services
from tests.support.db import stored_messages, wait_stored
from tests.support.ledger import Ledger, agent_login, check, user_login
from tests.support.proxy import CuttableProxy
from tests.support.redisproc import RedisProcess
from tests.support.server import KefuServer
from tests.support.wsclient import WsClient

FAST = {"KEFU_RATE_BURST": "5000", "KEFU_RATE_PER_SEC": "5000", "KEFU_PUSH_PORT": "0",
        "KEFU_WRITER_CLAIM_IDLE_MS": "1000", "KEFU_WRITER_RETRY_MAX": "0.5"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    r = RedisProcess(tmp_path / "redis", appendfsync="always")
    r.start()
    yield r
    r.stop()


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest, tmp_path: Path,
                  own_redis: RedisProcess) -> Iterator[Deployment]:
    d = Deployment("redis_mysql", tmp_path, request.node.name)
    d.env.update(REDIS_URL=own_redis.url, **FAST)
    yield d
    d.close()


@pytest.fixture
async def mysql_proxy() -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(services.MYSQL_HOST, services.MYSQL_PORT)
    await proxy.start()
    yield proxy
    await proxy.cut()


def users(servers: list[KefuServer], n: int, prefix: str) -> list[Ledger]:
    """`n` users spread over the nodes; each falls over to the next node when its own goes."""
    bases = [s.base_url for s in servers]
    return [Ledger(f"{prefix}{i}", bases[i % len(bases):] + bases[:i % len(bases)],
                   partial(user_login, code=f"{prefix}{i}")) for i in range(n)]


def watcher(servers: list[KefuServer], name: str) -> Ledger:
    """An agent watching every conversation (its account is made through the first node's CLI)."""
    servers[0].create_agent(name)
    bases = [s.base_url for s in reversed(servers)]
    return Ledger(name, bases, partial(agent_login, name=name), role="agent")


async def run_all(senders: list[Ledger], watchers: list[Ledger], n: int,
                  fault: Callable[[], Awaitable[None]], gap: float = 0.004) -> None:
    watching = [asyncio.create_task(w.run(timeout=90)) for w in watchers]
    await asyncio.sleep(0.3)
    sending = [asyncio.create_task(u.run(n, gap=gap, timeout=90)) for u in senders]
    await fault()
    await asyncio.gather(*sending)
    for w in watchers:
        w.stop()
    await asyncio.gather(*watching)
    for led in [*senders, *watchers]:
        await led.final_sync()


def settle(d: Deployment, ledgers: list[Ledger], timeout: float = 30.0) -> list[dict]:
    acked = sum(len(led.acked) for led in ledgers)
    return wait_stored(d, acked, timeout=timeout)


async def until_acked(ledgers: list[Ledger], count: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while sum(len(led.acked) for led in ledgers) < count:
            await asyncio.sleep(0.02)


async def send_until_acked(ws: WsClient, frame: dict, timeout: float = 20.0) -> dict:
    """Send, and resend after each `unavailable`, as protocol.md tells a client to."""
    async with asyncio.timeout(timeout):
        while True:
            await ws.send(frame)
            f = await ws.recv_until(lambda f: f.get("cmd") in ("ack", "error"), timeout=timeout)
            if f["cmd"] == "ack":
                return f
            assert (f["code"], f["retry"]) == ("unavailable", True), f
            await asyncio.sleep(0.3)


# ---- faults under traffic ------------------------------------------------------------------------


async def test_kill9_of_a_node_mid_burst_loses_nothing(redis_cluster, own_redis):
    d = redis_cluster
    a, b = d.server(), d.server()
    senders, agent = users([a, b], 4, "k9u"), watcher([a, b], "k9agent")

    async def fault() -> None:
        await until_acked(senders, 40)
        await asyncio.to_thread(a.kill9)  # right in the burst: node A's unstored messages are orphans

    await run_all(senders, [agent], 50, fault)
    check([*senders, agent], settle(d, [*senders, agent]))


async def test_redis_killed_and_restarted_with_aof(redis_cluster, own_redis):
    d = redis_cluster
    a, b = d.server(), d.server()
    senders, agent = users([a, b], 3, "rku"), watcher([a, b], "rkagent")

    async def fault() -> None:
        await until_acked(senders, 30)
        await asyncio.to_thread(own_redis.kill9)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_redis.start)
        for _ in range(300):  # the agent's socket stayed open: it is told to sync (within 15 s)
            if agent.resyncs:
                break
            await asyncio.sleep(0.05)
        assert agent.resyncs, f"no resync frame; the agent got {agent.frames}, closes {agent.closes}"

    await run_all(senders, [agent], 50, fault)
    check([*senders, agent], settle(d, [*senders, agent]))


async def test_redis_restarted_empty_while_kefu_runs(redis_cluster, own_redis):
    d = redis_cluster
    a, b = d.server(), d.server()
    senders, agent = users([a, b], 3, "reu"), watcher([a, b], "reagent")
    before: list[int] = []

    async def fault() -> None:
        await until_acked(senders, 30)
        await asyncio.to_thread(own_redis.kill9)
        await asyncio.sleep(0.3)  # acks already on their way arrive
        before.extend(i for led in senders for i in led.acked.values())
        await asyncio.to_thread(own_redis.wipe)
        await asyncio.to_thread(own_redis.start)

    await run_all(senders, [agent], 50, fault)
    late = users([a, b], 2, "relate")  # new users, after the reset: new logins, new ids
    await asyncio.gather(*(led.run(5, timeout=30) for led in late))
    for led in [*late, agent]:  # the agent sees the late ones too
        await led.final_sync()
    rows = settle(d, [*senders, agent, *late])
    check([*senders, agent, *late], rows)
    after = [i for led in late for i in led.acked.values()]
    assert min(after) > max(before), "ids continue above every id handed out before the reset"
    assert a.proc.poll() is None and b.proc.poll() is None


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
            for c in (t / "children").read_text().split()]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaper may be slow to collect it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


async def test_kill9_of_the_embedded_server_mid_burst(tmp_path, request):
    d = Deployment("embedded", tmp_path, request.node.name)
    d.env.update(FAST)
    try:
        srv = d.server()
        senders, agent = users([srv], 3, "emu"), watcher([srv], "emagent")

        async def fault() -> None:
            await until_acked(senders, 30)
            assert srv.proc is not None
            writers = children(srv.proc.pid)  # the message writer's process
            assert writers, "the embedded server writes through a process of its own"
            await asyncio.to_thread(srv.kill9)
            await asyncio.to_thread(srv.start)
            for _ in range(100):  # the killed server's writer finishes its batch and exits
                if not any(running(pid) for pid in writers):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the killed server's writer processes {writers} are still running")

        await run_all(senders, [agent], 50, fault)
        check([*senders, agent], settle(d, [*senders, agent]))
    finally:
        d.close()


async def test_mysql_outage_mid_traffic(redis_cluster, mysql_proxy):
    d = redis_cluster
    a = d.server(start=False)  # migrated through the direct URL; served through the proxy
    d.env["MYSQL_URL"] = services.mysql_url(d.database, port=mysql_proxy.port)
    a.env["MYSQL_URL"] = d.env["MYSQL_URL"]
    await asyncio.to_thread(a.start)  # the proxy runs on this loop: block nothing while it is up
    b = await asyncio.to_thread(d.server)
    senders = users([a, b], 3, "myu")
    agent = await asyncio.to_thread(watcher, [a, b], "myagent")

    async def fault() -> None:
        await until_acked(senders, 30)
        await mysql_proxy.cut()
        await asyncio.sleep(2.0)  # acks go on meanwhile: the journal holds the messages
        await mysql_proxy.restore()

    await run_all(senders, [agent], 50, fault)
    rows = await asyncio.to_thread(settle, d, [*senders, agent])  # the proxy must keep running
    check([*senders, agent], rows)
    # Stopped while the proxy still runs on this loop: a stop flushes through it (in the
    # fixtures' teardown the loop no longer runs, and each stop waited 20 s for a kill).
    await asyncio.to_thread(lambda: [s.stop() for s in d.servers])


# ---- one defect each -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["embedded", "redis_mysql"])
async def test_a_dup_ack_names_the_durable_original_and_tells_the_truth(backend, tmp_path, request):
    d = Deployment(backend, tmp_path, request.node.name)
    d.env.update(FAST)
    try:
        srv = d.server()
        token, _ = srv.user_token("dup-user")
        user = await WsClient.connect(srv.ws_url, token)
        await user.send({"msg": "first", "type": 2, "cmid": "same"})
        ack = await user.recv_until(lambda f: f.get("cmd") == "ack")
        assert ack["delivered"] is False and "dup" not in ack  # no agent is online
        srv.create_agent("dup-agent")
        agent = await WsClient.connect(srv.ws_url, srv.agent_token("dup-agent"))
        await user.send({"msg": "first", "type": 2, "cmid": "same"})
        dup = await user.recv_until(lambda f: f.get("cmd") == "ack")
        assert (dup["id"], dup["ts"], dup["delivered"], dup["dup"]) == (ack["id"], ack["ts"], False, True)
        assert await agent.nothing_for(0.3) == []  # a duplicate is not relayed again
        await user.close()
        await agent.close()
        wait_stored(d, 1)
        srv.restart()  # dedupe outlives the process (embedded: the database; Redis: its records)
        user = await WsClient.connect(srv.ws_url, token)
        await user.send({"msg": "first", "type": 2, "cmid": "same"})
        again = await user.recv_until(lambda f: f.get("cmd") == "ack")
        assert (again["id"], again.get("dup"), again["delivered"]) == (ack["id"], True, False)
        assert [r["cmid"] for r in stored_messages(d)] == ["same"]
    finally:
        d.close()


async def test_redis_losing_its_dedupe_records_still_dedupes_stored_messages(redis_cluster, own_redis):
    d = redis_cluster
    srv = d.server()
    token, _ = srv.user_token("lost-user")
    user = await WsClient.connect(srv.ws_url, token)
    await user.send({"msg": "kept", "type": 2, "cmid": "k1"})
    ack = await user.recv_until(lambda f: f.get("cmd") == "ack")
    wait_stored(d, 1)
    own_redis.kill9()
    own_redis.wipe()
    own_redis.start()
    again = await send_until_acked(user, {"msg": "kept", "type": 2, "cmid": "k1"})  # the socket lived on
    assert (again["id"], again.get("dup")) == (ack["id"], True)
    await user.send({"msg": "new", "type": 2, "cmid": "k2"})
    new = await user.recv_until(lambda f: f.get("cmd") == "ack" and f["cmid"] == "k2")
    assert new["id"] > ack["id"]
    rows = wait_stored(d, 2)
    assert [(r["cmid"], r["id"]) for r in rows] == [("k1", ack["id"]), ("k2", new["id"])]


@pytest.mark.parametrize("backend", ["embedded", "redis_mysql"])
async def test_sync_is_exact_while_the_writer_moves_batches(backend, tmp_path, request):
    d = Deployment(backend, tmp_path, request.node.name)
    d.env.update(FAST, KEFU_WRITER_BATCH="7")
    try:
        srv = d.server()
        srv.create_agent("syncer")
        agent = await WsClient.connect(srv.ws_url, srv.agent_token("syncer"))
        senders = [await WsClient.connect(srv.ws_url, srv.user_token(f"sx{i}")[0]) for i in range(3)]
        replies: list[tuple[int, list[int]]] = []

        async def send(ws: WsClient, tag: str) -> None:
            for i in range(80):
                await ws.send({"msg": f"{tag}-{i}", "type": 2, "cmid": f"{tag}-{i}"})
                await asyncio.sleep(0.001)

        sending = [asyncio.create_task(send(ws, f"s{i}")) for i, ws in enumerate(senders)]
        cursor = 0
        async with asyncio.timeout(60):
            while not all(t.done() for t in sending) or len(replies) < 10:
                await agent.send({"cmd": "sync", "after": cursor, "limit": 50})
                reply = await agent.recv_until(lambda f: f.get("cmd") == "sync")
                ids = [m["id"] for m in reply["messages"]]
                replies.append((cursor, ids))
                cursor = max(ids, default=cursor)
        rows = wait_stored(d, 240)
        stored = sorted(r["id"] for r in rows)
        assert len(stored) == 240
        for after, ids in replies:
            if ids:
                expected = [i for i in stored if after < i <= max(ids)]
                assert ids == expected, f"sync after {after} skipped {sorted(set(expected) - set(ids))}"
    finally:
        d.close()


async def test_a_broker_outage_tells_open_sockets_to_sync(redis_cluster, own_redis):
    d = redis_cluster
    srv = d.server()
    token, _ = srv.user_token("gap-user")
    v2 = await WsClient.connect(srv.ws_url, token)
    legacy = await WsClient.connect(srv.ws_url, token, v2=False)
    await legacy.send({"cmd": "sync"})  # answered once the socket is registered
    assert (await legacy.recv())["cmd"] == "sync"
    own_redis.kill9()
    await asyncio.sleep(0.5)
    own_redis.start()
    assert (await v2.recv_until(lambda f: f.get("cmd") == "resync", timeout=15)) == {"cmd": "resync"}
    assert (await legacy.closed(timeout=15))[0] == 1012


async def test_unavailable_never_earns_4429_and_connects_get_1013(redis_cluster, own_redis):
    d = redis_cluster
    srv = d.server(KEFU_ERROR_STRIKES="3")
    token, _ = srv.user_token("honest")
    user = await WsClient.connect(srv.ws_url, token)
    own_redis.kill9()
    for i in range(20):  # an honest client resending while Redis is down: never punished
        await user.send({"msg": f"m{i}", "type": 2, "cmid": "retry-me"})
        err = await user.recv_until(lambda f: f.get("cmd") == "error", timeout=10)
        assert (err["code"], err["retry"], err["cmid"]) == ("unavailable", True, "retry-me")
    late = await WsClient.connect(srv.ws_url, token, hello=False)
    assert (await late.closed(timeout=10))[0] == 1013
    own_redis.start()
    await send_until_acked(user, {"msg": "m", "type": 2, "cmid": "retry-me"})


async def test_every_endpoint_answers_503_while_mysql_is_down(redis_deployment, mysql_proxy):
    d = redis_deployment
    srv = d.server(start=False)
    srv.env["MYSQL_URL"] = services.mysql_url(d.database, port=mysql_proxy.port)
    await asyncio.to_thread(srv.start)  # the proxy runs on this loop: block nothing while it is up
    await asyncio.to_thread(srv.create_agent, "down-agent")
    agent_token = await asyncio.to_thread(srv.agent_token, "down-agent")
    user_token, openid = await asyncio.to_thread(srv.user_token, "down-user")
    await mysql_proxy.cut()
    base = srv.base_url
    ua, uu = {"Authorization": f"Bearer {agent_token}"}, {"Authorization": f"Bearer {user_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:  # the proxy runs on this loop
        calls = [
            await c.post("/api/agent/login", json={"name": "down-agent", "password": "correct-horse-1"}),
            await c.post("/api/login", json={"code": "someone-new"}),
            await c.get("/api/me", headers=uu),
            await c.get("/api/conversations", headers=ua),
            await c.get(f"/api/conversations/{openid}/messages", headers=ua),
            await c.post(f"/api/conversations/{openid}/read", headers=ua),
        ]
    for r in calls:
        assert (r.status_code, r.json()["error"]) == (503, "unavailable"), r.request.url
        assert r.headers["retry-after"]
    # The operator learns the cause, once for the burst, not once per request.
    reports = [line for line in srv.log_path.read_text(errors="replace").splitlines()
               if "a backing store failed, answered unavailable" in line]
    assert 1 <= len(reports) < len(calls), reports
    assert "[SQL:" not in reports[0], reports[0]
    await mysql_proxy.restore()
    r = await asyncio.to_thread(httpx.get, base + "/api/conversations", headers=ua)
    assert r.status_code == 200


async def test_shutdown_after_a_redis_outage_is_clean(redis_cluster, own_redis):
    d = redis_cluster
    srv = d.server()
    token, _ = srv.user_token("shut-user")
    user = await WsClient.connect(srv.ws_url, token)
    own_redis.kill9()
    await asyncio.sleep(1.0)
    own_redis.start()
    await user.recv_until(lambda f: f.get("cmd") == "resync", timeout=15)
    srv.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(srv.proc.wait, 20) == 0
    log = srv.log_path.read_text(errors="replace")
    assert "Task was destroyed" not in log and "Traceback" not in log
