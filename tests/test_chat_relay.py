"""User ⇄ agent relay through real sockets on a real server, on both backends."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.db import wait_stored
from tests.support.wsclient import WsClient


async def test_legacy_frames_relay_both_ways_unchanged(deployment):
    srv = deployment.server()
    srv.create_agent("alice")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("alice"), v2=False)
    token, openid = srv.user_token("legacy-user")
    user = await WsClient.connect(srv.ws_url, token, v2=False)

    await user.send({"msg": "你好，在吗？", "type": 2})
    got = await agent.recv()
    assert got["msg"] == "你好，在吗？" and got["openid"] == openid and got["from"] == "user"

    await agent.send({"msg": "在的 👋", "type": 1, "openid": openid})
    reply = await user.recv()
    assert reply["msg"] == "在的 👋"
    # Legacy sockets get no frame without `msg` they did not ask for: no hello, ack, pong or read.
    await user.send({"cmd": "ping"})
    assert await user.nothing_for(0.5) == []
    assert await agent.nothing_for(0.3) == []
    await user.close()
    await agent.close()


async def test_ack_carries_ids_and_a_resent_cmid_is_not_duplicated(deployment):
    srv = deployment.server()
    srv.create_agent("bob")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("bob"))
    user = await WsClient.connect(srv.ws_url, srv.user_token("dedupe-user")[0])

    await user.send({"msg": "first", "type": 2, "cmid": "c-1"})
    ack = await user.recv_until(lambda f: f.get("cmd") == "ack")
    assert ack["cmid"] == "c-1" and ack["id"] > 0 and ack["delivered"] is True and "dup" not in ack
    seen = await agent.recv()
    assert seen["id"] == ack["id"] and seen["ts"] == ack["ts"] and seen["cmid"] == "c-1"

    await user.send({"msg": "first", "type": 2, "cmid": "c-1"})
    again = await user.recv_until(lambda f: f.get("cmd") == "ack")
    assert again["id"] == ack["id"] and again["dup"] is True
    assert await agent.nothing_for(0.5) == []

    rows = wait_stored(deployment, 1)
    await asyncio.sleep(0.5)
    rows = wait_stored(deployment, 1)
    assert [(r["cmid"], r["body"]) for r in rows] == [("c-1", "first")]


async def test_agent_reply_reaches_every_socket_of_that_user_and_other_agents(deployment):
    srv = deployment.server()
    srv.create_agent("a1")
    srv.create_agent("a2")
    a1 = await WsClient.connect(srv.ws_url, srv.agent_token("a1"))
    a2 = await WsClient.connect(srv.ws_url, srv.agent_token("a2"))
    token, openid = srv.user_token("two-devices")
    phone = await WsClient.connect(srv.ws_url, token)
    tablet = await WsClient.connect(srv.ws_url, token)
    other_token, _ = srv.user_token("bystander")
    bystander = await WsClient.connect(srv.ws_url, other_token)

    await a1.send({"msg": "hi", "type": 1, "openid": openid, "cmid": "r1"})
    ack = await a1.recv()
    assert ack["cmd"] == "ack" and ack["delivered"] is True
    for sock in (phone, tablet):
        f = await sock.recv()
        assert f["msg"] == "hi" and f["from"] == "agent" and f["agent"] == "a1" and f["id"] == ack["id"]
    mirrored = await a2.recv()
    assert mirrored["from"] == "agent" and mirrored["openid"] == openid
    assert await bystander.nothing_for(0.4) == []


async def test_undelivered_message_is_stored_and_synced_after_reconnect(deployment):
    srv = deployment.server()
    srv.create_agent("carol")
    token, openid = srv.user_token("sync-user")
    user = await WsClient.connect(srv.ws_url, token)
    ids = []
    for i in range(3):
        await user.send({"msg": f"m{i}", "type": 2, "cmid": f"s{i}"})
        ack = await user.recv_until(lambda f: f.get("cmd") == "ack")
        assert ack["delivered"] is False  # no agent online yet
        ids.append(ack["id"])
    assert ids == sorted(ids)

    agent = await WsClient.connect(srv.ws_url, srv.agent_token("carol"))
    await agent.send({"cmd": "sync", "after": 0})
    sync = await agent.recv()
    assert [m["msg"] for m in sync["messages"]] == ["m0", "m1", "m2"] and sync["more"] is False
    await agent.send({"cmd": "sync", "after": ids[1]})
    assert [m["id"] for m in (await agent.recv())["messages"]] == [ids[2]]
    await agent.send({"cmd": "sync", "after": 0, "limit": 2})
    page = await agent.recv()
    assert [m["id"] for m in page["messages"]] == ids[:2] and page["more"] is True

    # The agent answers while the user is away; the user's sync brings back exactly that.
    await user.close()
    await agent.send({"msg": "while you were away", "type": 1, "openid": openid, "cmid": "x"})
    ack = await agent.recv_until(lambda f: f.get("cmd") == "ack")
    assert ack["delivered"] is False
    user = await WsClient.connect(srv.ws_url, token)
    await user.send({"cmd": "sync", "after": ids[2]})
    missed = await user.recv()
    assert [(m["id"], m["msg"]) for m in missed["messages"]] == [(ack["id"], "while you were away")]


async def test_read_receipts_and_unread_counts(deployment):
    srv = deployment.server()
    srv.create_agent("dora")
    token, openid = srv.user_token("reader")
    user = await WsClient.connect(srv.ws_url, token)
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("dora"))
    for i in range(2):
        await user.send({"msg": f"q{i}", "type": 2, "cmid": f"q{i}"})
        await user.recv_until(lambda f: f.get("cmd") == "ack")
    wait_stored(deployment, 2)
    h = {"Authorization": f"Bearer {srv.agent_token('dora')}"}
    convs = httpx.get(srv.base_url + "/api/conversations", headers=h).json()["conversations"]
    assert [(c["openid"], c["unread"], c["last_message"]["msg"]) for c in convs] == [(openid, 2, "q1")]

    await agent.send({"cmd": "read", "openid": openid})
    receipt = await user.recv_until(lambda f: f.get("cmd") == "read")
    assert receipt["by"] == "agent" and receipt["openid"] == openid and receipt["upto"] > 0
    convs = httpx.get(srv.base_url + "/api/conversations", headers=h).json()["conversations"]
    assert convs[0]["unread"] == 0

    await agent.send({"msg": "answer", "type": 1, "openid": openid, "cmid": "ans"})
    await agent.recv_until(lambda f: f.get("cmd") == "ack")
    wait_stored(deployment, 3)
    me = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"role": "user", "openid": openid, "unread": 1, "agent_read_upto": receipt["upto"],
                  "user_read_upto": 0}
    r = httpx.post(srv.base_url + f"/api/conversations/{openid}/read", json={},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["by"] == "user"
    agent_sees = await agent.recv_until(lambda f: f.get("cmd") == "read")
    assert agent_sees["by"] == "user"
    me = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["unread"] == 0


async def test_http_history_pages_newest_first(deployment):
    srv = deployment.server()
    srv.create_agent("eve")
    token, openid = srv.user_token("history-user")
    user = await WsClient.connect(srv.ws_url, token)
    for i in range(5):
        await user.send({"msg": f"h{i}", "type": 2, "cmid": f"h{i}"})
        await user.recv_until(lambda f: f.get("cmd") == "ack")
    wait_stored(deployment, 5)
    h = {"Authorization": f"Bearer {srv.agent_token('eve')}"}
    url = srv.base_url + f"/api/conversations/{openid}/messages"
    seen, before = [], None
    while True:
        params = {"limit": 2} | ({"before": before} if before else {})
        page = httpx.get(url, params=params, headers=h).json()
        seen += [m["msg"] for m in page["messages"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == ["h4", "h3", "h2", "h1", "h0"]
    # the user may read their own history, not another user's
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    other, _ = srv.user_token("someone-else")
    r = httpx.get(url, headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = httpx.get(url, params={"limit": 0}, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
