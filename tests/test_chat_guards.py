"""Tokens, roles, bad input, abuse and liveness: what a socket may not do, on both backends."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.support.db import wait_stored
from tests.support.wsclient import WsClient


async def test_sockets_without_a_valid_token_are_closed_4401_before_any_data(deployment):
    srv = deployment.server()
    for token in (None, "", "not-a-token"):
        c = await WsClient.connect(srv.ws_url, token or None, hello=False)
        code, reason = await c.closed()
        assert code == 4401, (token, code, reason)
        assert reason == ("token required" if not token else "invalid token")

    token, _ = srv.user_token("soon-logged-out")
    live = await WsClient.connect(srv.ws_url, token)
    r = httpx.post(srv.base_url + "/api/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert await live.closed() == (4401, "logged out")
    again = await WsClient.connect(srv.ws_url, token, v2=False)
    assert await again.closed() == (4401, "invalid token")
    me = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


async def test_a_logout_on_one_process_refuses_the_token_on_every_process(redis_deployment):
    """Each process remembers the users' tokens it issued or resolved; a logout anywhere makes
    every process forget it at once."""
    one, two = redis_deployment.server(), redis_deployment.server()
    token, _ = one.user_token("remembered")  # issued (and remembered) by one
    for srv in (one, two, one, two):  # resolved (and remembered) by two too
        c = await WsClient.connect(srv.ws_url, token)
        await c.close()
    r = httpx.post(two.base_url + "/api/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    for srv in (one, two):
        c = await WsClient.connect(srv.ws_url, token, v2=False)
        assert await c.closed() == (4401, "invalid token")
        me = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401


async def test_expired_tokens_are_refused_and_close_open_sockets(deployment):
    srv = deployment.server(KEFU_USER_TOKEN_TTL="2", KEFU_HEARTBEAT_TIMEOUT="4")
    token, _ = srv.user_token("short-lived")
    open_socket = await WsClient.connect(srv.ws_url, token)
    assert await open_socket.closed(timeout=6) == (4401, "token expired")
    c = await WsClient.connect(srv.ws_url, token, v2=False)
    assert await c.closed() == (4401, "invalid token")


async def test_users_cannot_impersonate_and_agents_cannot_pose_as_users(deployment):
    srv = deployment.server()
    srv.create_agent("guard")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("guard"))
    victim_token, victim = srv.user_token("victim")
    victim_ws = await WsClient.connect(srv.ws_url, victim_token)
    token, me = srv.user_token("mallory")
    user = await WsClient.connect(srv.ws_url, token)

    attempts = [
        ({"msg": "as agent", "type": 1, "openid": victim, "cmid": "i1"}, "forbidden"),
        ({"msg": "as victim", "type": 2, "openid": victim, "cmid": "i2"}, "forbidden"),
        ({"cmd": "read", "openid": victim}, "forbidden"),
    ]
    for frame, code in attempts:
        await user.send(frame)
        err = await user.recv()
        assert err["cmd"] == "error" and err["code"] == code, (frame, err)
    await agent.send({"msg": "as a user", "type": 2, "cmid": "i3"})
    err = await agent.recv()
    assert err == {"cmd": "error", "code": "forbidden", "message": err["message"], "retry": False,
                   "cmid": "i3"}
    assert await victim_ws.nothing_for(0.4) == []
    assert await agent.nothing_for(0.1) == []

    # The user's own openid in the frame is fine; a sync only ever shows their own conversation.
    await user.send({"msg": "mine", "type": 2, "openid": me, "cmid": "ok"})
    assert (await user.recv_until(lambda f: f.get("cmd") == "ack"))["cmid"] == "ok"
    await victim_ws.send({"msg": "victim's secret", "type": 2, "cmid": "v"})
    await victim_ws.recv_until(lambda f: f.get("cmd") == "ack")
    await user.send({"cmd": "sync", "after": 0})
    synced = await user.recv_until(lambda f: f.get("cmd") == "sync")
    assert {m["openid"] for m in synced["messages"]} == {me}
    h = {"Authorization": f"Bearer {token}"}
    assert httpx.get(srv.base_url + "/api/conversations", headers=h).status_code == 403


async def test_bad_frames_get_error_frames_and_the_connection_carries_on(deployment):
    srv = deployment.server(KEFU_MAX_MESSAGE_BYTES="1000", KEFU_MAX_FRAME_BYTES="8192")
    srv.create_agent("bystander")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("bystander"))
    token, openid = srv.user_token("clumsy")
    user = await WsClient.connect(srv.ws_url, token)
    cases = [
        ("not json", "bad_json"),
        ("[1,2,3]", "bad_json"),
        (json.dumps({"msg": "x", "type": 7}), "unknown_type"),
        (json.dumps({"cmd": "dance"}), "unknown_cmd"),
        (json.dumps({"msg": 12, "type": 2}), "bad_frame"),
        (json.dumps({"msg": "", "type": 2}), "bad_frame"),
        (json.dumps({"msg": "x", "type": 2, "cmid": "é" * 3}), "bad_frame"),
        (json.dumps({"cmd": "sync", "after": -1}), "bad_frame"),
        (json.dumps({"msg": "界" * 400, "type": 2}), "too_large"),
    ]
    for text, code in cases:
        await user.send(text)
        err = await user.recv()
        assert err["cmd"] == "error" and err["code"] == code, (text, err)
    await user.conn.send(b"\x00\x01binary")
    assert (await user.recv())["code"] == "binary"

    # Still usable after all that, and the other connection never noticed.
    await user.send({"msg": "still here", "type": 2, "cmid": "fine"})
    assert (await user.recv_until(lambda f: f.get("cmd") == "ack"))["cmid"] == "fine"
    got = await agent.recv()
    assert got["msg"] == "still here" and got["openid"] == openid

    # A frame over the hard frame limit closes that socket with 1009 and nothing else.
    await user.send({"msg": "y" * 9000, "type": 2})
    code, _ = await user.closed()
    assert code == 1009
    await agent.send({"cmd": "ping"})
    assert (await agent.recv())["cmd"] == "pong"


async def test_persistent_abuse_is_closed_4429_and_floods_are_rate_limited(deployment):
    srv = deployment.server(KEFU_ERROR_STRIKES="5", KEFU_RATE_PER_SEC="2", KEFU_RATE_BURST="3")
    token, _ = srv.user_token("flooder")
    user = await WsClient.connect(srv.ws_url, token)
    for i in range(6):
        await user.send({"msg": f"m{i}", "type": 2, "cmid": f"f{i}"})
    frames = [await user.recv() for _ in range(6)]
    acks = [f for f in frames if f["cmd"] == "ack"]
    limited = [f for f in frames if f["cmd"] == "error"]
    assert len(acks) == 3 and {f["code"] for f in limited} == {"rate_limited"}
    assert {f["cmid"] for f in limited} == {"f3", "f4", "f5"}

    abuser = await WsClient.connect(srv.ws_url, srv.user_token("abuser")[0])
    for _ in range(10):
        await abuser.send("garbage")
    code, reason = await abuser.closed()
    assert (code, reason) == (4429, "too many errors")


async def test_silent_sockets_are_closed_4408_and_heartbeats_keep_them(deployment):
    srv = deployment.server(KEFU_HEARTBEAT_TIMEOUT="1.5")
    token, openid = srv.user_token("sleepy")
    srv.create_agent("waker")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("waker"), ping_interval=0.4)
    silent = await WsClient.connect(srv.ws_url, token, ping_interval=None)
    app_pinger = await WsClient.connect(srv.ws_url, token, ping_interval=None)
    proto_pinger = await WsClient.connect(srv.ws_url, token, ping_interval=0.4)
    stop = asyncio.Event()

    async def ping_loop() -> None:
        for _ in range(40):  # bounded: ~12 s at most
            await app_pinger.send({"cmd": "ping"})
            assert (await app_pinger.recv())["cmd"] == "pong"
            if stop.is_set():
                return
            await asyncio.sleep(0.3)

    pinging = asyncio.create_task(ping_loop())
    assert await silent.closed(timeout=6) == (4408, "heartbeat timeout")
    await asyncio.sleep(1.0)  # a heartbeat timeout later than the silent socket's end
    stop.set()
    await pinging
    # Both heartbeating sockets outlived the silent one and are still in the user's channel.
    await agent.send({"msg": "still there?", "type": 1, "openid": openid, "cmid": "w"})
    assert (await agent.recv())["delivered"] is True
    assert (await app_pinger.recv())["msg"] == "still there?"
    assert (await proto_pinger.recv())["msg"] == "still there?"
    assert httpx.get(srv.base_url + "/healthz").json()["connections"] == 3


async def test_tricky_text_is_stored_byte_exact(deployment):
    srv = deployment.server()
    token, openid = srv.user_token("poet")
    user = await WsClient.connect(srv.ws_url, token)
    bodies = [
        "it's \"quoted\" \\ back\\slash",
        "'); DROP TABLE messages; --",
        "emoji 😀👍🏽👨‍👩‍👧 and 中文，全角标点。",
        "\u0000 nul and \t tab \r\n newline",
        "界" * (65536 // 3),                 # just under 64 KiB of 3-byte UTF-8
        "😀" * (65536 // 4),                 # exactly 64 KiB of 4-byte UTF-8
    ]
    for i, body in enumerate(bodies):
        await user.send({"msg": body, "type": 2, "cmid": f"t{i}"})
        ack = await user.recv_until(lambda f: f.get("cmd") in ("ack", "error"))
        assert ack["cmd"] == "ack", ack
    rows = wait_stored(deployment, len(bodies))
    assert [r["body"] for r in rows] == bodies
    assert all(r["openid"] == openid for r in rows)
    srv.create_agent("reader")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("reader"))
    await agent.send({"cmd": "sync", "after": 0})
    assert [m["msg"] for m in (await agent.recv())["messages"]] == bodies


async def test_http_errors_are_json_with_codes(server):
    base = server.base_url
    cases = [
        (httpx.post(base + "/api/login", content=b"nope"), 400, "bad_request"),
        (httpx.post(base + "/api/login", json={"code": 5}), 400, "bad_request"),
        (httpx.post(base + "/api/agent/login", json={"name": "ghost", "password": "whatever1"}), 401,
         "unauthorized"),
        (httpx.get(base + "/api/me"), 401, "unauthorized"),
        (httpx.get(base + "/api/nope"), 404, "not_found"),
        (httpx.post(base + "/api/login", content=b"x" * 300_000), 413, "too_large"),
    ]
    for r, status, code in cases:
        assert r.status_code == status, (r.request.url, r.status_code, r.text)
        assert r.json()["error"] == code and r.json()["message"]


async def test_wrong_agent_password_is_refused(server):
    server.create_agent("frank", "right-password")
    login = server.base_url + "/api/agent/login"
    r = httpx.post(login, json={"name": "frank", "password": "wrong-password"})
    assert r.status_code == 401
    ok = httpx.post(login, json={"name": "frank", "password": "right-password"})
    assert ok.status_code == 200 and ok.json()["agent"]["name"] == "frank"
    dup = server.cli("create-agent", "frank", "--password", "another-pass", check=False)
    assert dup.returncode != 0 and "exists" in dup.stderr


async def test_protocol_close_on_oversized_handshake_is_not_a_crash(server):
    # A client that opens and drops immediately, repeatedly, leaves nothing behind.
    token, _ = server.user_token("flaky")
    for _ in range(20):
        ws = await websockets.connect(f"{server.ws_url}?token={token}")
        await ws.close()
    await asyncio.sleep(0.3)
    assert httpx.get(server.base_url + "/healthz").json()["connections"] == 0
