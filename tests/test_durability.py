"""Nothing acknowledged is lost: crashes, database outages, drains; and two processes act as one."""

from __future__ import annotations

import asyncio
import signal

import httpx

from tests.support import services
from tests.support.db import stored_messages, wait_stored
from tests.support.proxy import CuttableProxy
from tests.support.wsclient import WsClient

N = 40


async def _send_acked(user: WsClient, n: int, prefix: str) -> list[int]:
    """Send `n` messages with cmids and return the acked ids (pipelined, then collected)."""
    for i in range(n):
        await user.send({"msg": f"{prefix}-{i}", "type": 2, "cmid": f"{prefix}-{i}"})
    acks = []
    while len(acks) < n:
        f = await user.recv(timeout=10)
        assert f["cmd"] != "error", f
        if f["cmd"] == "ack":
            acks.append(f["id"])
    return acks


async def test_kill9_right_after_acks_loses_nothing(deployment):
    srv = deployment.server(KEFU_RATE_BURST="1000", KEFU_RATE_PER_SEC="1000")
    token, _ = srv.user_token("crash-user")
    user = await WsClient.connect(srv.ws_url, token)
    acked = await _send_acked(user, N, "k")
    srv.kill9()
    srv.start()
    rows = wait_stored(deployment, N)
    ids = [r["id"] for r in rows]
    assert sorted(acked) == ids, "every acked message is stored, exactly once"
    assert [r["body"] for r in rows] == [f"k-{i}" for i in range(N)]
    # and ids keep increasing after the restart
    user = await WsClient.connect(srv.ws_url, token)
    later = await _send_acked(user, 1, "after")
    assert later[0] > max(acked)


async def test_mysql_outage_keeps_relaying_and_acking_then_stores_everything(redis_deployment, tmp_path):
    proxy = CuttableProxy(services.MYSQL_HOST, services.MYSQL_PORT)
    await proxy.start()
    d = redis_deployment
    d.server(start=False)  # migrates through the direct URL
    srv = d.servers[0]
    srv.env["MYSQL_URL"] = services.mysql_url(d.database, port=proxy.port)
    srv.env["KEFU_WRITER_RETRY_MAX"] = "0.5"
    await asyncio.to_thread(srv.start)
    await asyncio.to_thread(srv.create_agent, "outage-agent")
    agent = await WsClient.connect(srv.ws_url, await asyncio.to_thread(srv.agent_token, "outage-agent"))
    token, openid = await asyncio.to_thread(srv.user_token, "outage-user")
    user = await WsClient.connect(srv.ws_url, token)

    await proxy.cut()
    acked = await _send_acked(user, 10, "down")
    relayed = [await agent.recv() for _ in range(10)]
    assert [f["msg"] for f in relayed] == [f"down-{i}" for i in range(10)]
    await asyncio.sleep(1.0)
    assert stored_messages(d) == []  # nothing could be written yet
    # History cannot be read meanwhile: sync says so instead of answering with a partial list.
    await agent.send({"cmd": "sync", "after": 0})
    err = await agent.recv_until(lambda f: f.get("cmd") in ("sync", "error"), timeout=20)
    assert err["cmd"] == "error" and err["code"] == "unavailable"

    await proxy.restore()
    rows = await asyncio.to_thread(wait_stored, d, 10, 30.0)
    assert [r["id"] for r in rows] == sorted(acked) and {r["openid"] for r in rows} == {openid}
    await agent.send({"cmd": "sync", "after": 0})
    sync = await agent.recv_until(lambda f: f.get("cmd") == "sync")
    assert [m["id"] for m in sync["messages"]] == sorted(acked)
    await proxy.cut()


async def test_two_processes_behave_as_one_server(redis_deployment):
    d = redis_deployment
    a = d.server()
    b = d.server()
    a.create_agent("far-agent")
    agent = await WsClient.connect(b.ws_url, b.agent_token("far-agent"))
    token, openid = a.user_token("near-user")
    user = await WsClient.connect(a.ws_url, token)

    await user.send({"msg": "hello from A", "type": 2, "cmid": "x1"})
    assert (await user.recv())["delivered"] is True
    got = await agent.recv()
    assert got["msg"] == "hello from A" and got["openid"] == openid
    await agent.send({"msg": "hello from B", "type": 1, "openid": openid, "cmid": "y1"})
    assert (await agent.recv())["delivered"] is True
    assert (await user.recv())["msg"] == "hello from B"

    # A process that dies stops counting as online at once: its subscriptions die with it.
    a.kill9()
    await asyncio.sleep(0.5)
    await agent.send({"msg": "anyone?", "type": 1, "openid": openid, "cmid": "y2"})
    assert (await agent.recv())["delivered"] is False
    rows = wait_stored(d, 3)
    assert [r["body"] for r in rows] == ["hello from A", "hello from B", "anyone?"]


async def test_sigterm_drains_closes_1001_and_stores_what_was_acked(deployment):
    srv = deployment.server(KEFU_RATE_BURST="1000", KEFU_RATE_PER_SEC="1000")
    token, _ = srv.user_token("drain-user")
    user = await WsClient.connect(srv.ws_url, token)
    acked = await _send_acked(user, N, "d")
    srv.proc.send_signal(signal.SIGTERM)
    code, _ = await user.closed(timeout=15)
    assert code == 1001
    assert await asyncio.to_thread(srv.proc.wait, 20) == 0
    assert [r["id"] for r in stored_messages(deployment)] == sorted(acked)


async def test_several_workers_share_redis(redis_deployment):
    srv = redis_deployment.server(KEFU_WORKERS="2")
    srv.create_agent("w-agent")
    agents = [await WsClient.connect(srv.ws_url, srv.agent_token("w-agent")) for _ in range(4)]
    token, _ = srv.user_token("w-user")
    users = [await WsClient.connect(srv.ws_url, token) for _ in range(4)]
    await users[0].send({"msg": "to every agent, whichever worker", "type": 2, "cmid": "w"})
    for a in agents:
        assert (await a.recv())["msg"] == "to every agent, whichever worker"
    for u in users[1:]:
        assert (await u.recv())["from"] == "user"  # the user's other sockets see it too (v2)
    r = httpx.get(srv.base_url + "/healthz")
    assert r.status_code == 200


def test_production_refuses_the_sandbox(tmp_path):
    from tests.support.server import KefuServer
    srv = KefuServer({"KEFU_ENV": "production", "KEFU_DATA_DIR": str(tmp_path)}, tmp_path / "prod.log")
    r = srv.cli("serve", check=False)
    assert r.returncode != 0 and "sandbox is dev-only" in r.stderr


async def test_unread_counts_replies_still_in_the_journal_once(redis_deployment):
    """A reply acked but not yet written is unread already; once written (and while the journal
    still holds it) it counts once. Real MariaDB + Redis; the journal's writer is not started."""
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import create_async_engine

    from kefu.config import to_driver_url
    from kefu.journal.base import draft
    from kefu.journal.redis import RedisJournal
    from kefu.node import Node
    from kefu.protocol import Message
    from kefu.store.messages import MessageStore

    d = redis_deployment
    d.server(start=False)  # creates the schema
    engine = create_async_engine(to_driver_url(services.mysql_url(d.database), "mysql+aiomysql"))
    redis = Redis.from_url(services.REDIS_URL_BASE)
    store = MessageStore(engine)
    journal = RedisJournal(redis, d.prefix, store, batch=100, max_backoff=1.0, claim_idle_ms=60_000,
                           dedupe_ttl=3600)
    node = Node(broker=None, journal=journal, messages=store,  # type: ignore[arg-type]
                accounts=None, tokens=None, limits=None)  # type: ignore[arg-type]
    await journal._ensure_current()
    intake = asyncio.create_task(journal._run_intake())  # accepting, but no writer: acked stays journaled
    try:
        def reply(i: int) -> Message:
            return draft(ts=1_700_000_000_000 + i, openid="o_pending", sender="agent", msg=f"r{i}",
                         agent_id=1, agent="ann", cmid=f"r{i}")

        first = (await journal.accept(reply(1), "")).message
        await store.write([(first, False)])
        await store.mark_read("o_pending", "user", first.id)
        second = (await journal.accept(reply(2), "")).message
        await journal.accept(reply(3), "")
        marks = {"agent_read_upto": 0, "user_read_upto": first.id}
        assert await node.read_state("o_pending") == {"unread": 2, **marks}
        await store.write([(second, False)])  # written, not yet removed from the journal
        assert (await node.read_state("o_pending"))["unread"] == 2
        await store.mark_read("o_pending", "user", second.id)
        assert (await node.read_state("o_pending"))["unread"] == 1
    finally:
        intake.cancel()
        await redis.aclose()
        await engine.dispose()
