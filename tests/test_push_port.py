"""The TCP push port, driven the way PHP backends drive it: one socket, `json_encode($data)."\\n"`,
read the `ok`/`fail` reply. Pipelining, garbage, over-long lines, silent clients, the secret, and
pushes that cross processes through Redis."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx

from tests.support.qrflow import (
    PushClient,
    api_push,
    new_qr,
    open_page,
    push_port,
    sandbox_env,
)
from tests.support.server import KefuServer, free_port
from tests.support.wsclient import WsClient


async def test_a_php_backend_pushes_over_one_persistent_socket(deployment):
    srv = deployment.server(**sandbox_env())
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    php = await PushClient.connect(push_port(srv))
    login = {"uid": qr["uid"], "ticket": qr["ticket"], "type": "login", "token": "t-1", "名字": "张三 👋"}
    assert await php.send(login) == "ok\n"
    assert await page.recv() == login
    assert await php.send({"uid": qr["uid"], "ticket": qr["ticket"], "n": 2}) == "ok\n"
    assert (await page.recv())["n"] == 2
    # Refusals: nobody bound to the uid, a wrong ticket, no ticket (the port requires it).
    assert await php.send({"uid": "nobody-here", "ticket": "x"}) == "fail\n"
    assert await php.send({"uid": qr["uid"], "ticket": "not-its-ticket", "n": 3}) == "fail\n"
    assert await php.send({"uid": qr["uid"], "n": 4}) == "fail\n"
    assert await page.nothing_for(0.5) == []

    # To a mini-program user by openid: every socket of that user, legacy or v2; no agent.
    token, openid = srv.user_token("pushed-user")
    legacy = await WsClient.connect(srv.ws_url, token, v2=False)
    modern = await WsClient.connect(srv.ws_url, token)
    srv.create_agent("bystander")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("bystander"))
    assert await php.send({"openid": openid, "msg": "your order shipped"}) == "ok\n"
    for sock in (legacy, modern):
        assert await sock.recv() == {"openid": openid, "msg": "your order shipped"}
    assert await php.send({"openid": "o_nobody", "msg": "?"}) == "fail\n"

    # Broadcast reaches every bound page, and only pages.
    assert await php.send({"broadcast": True, "notice": "maintenance at 22:00"}) == "ok\n"
    assert (await page.recv())["notice"] == "maintenance at 22:00"
    assert await legacy.nothing_for(0.3) == [] and await agent.nothing_for(0.1) == []

    # `printf '{...}\n' | nc 127.0.0.1 5678`: one line, half-close, read the reply.
    r, w = await asyncio.open_connection("127.0.0.1", push_port(srv))
    w.write(json.dumps({"uid": qr["uid"], "ticket": qr["ticket"], "via": "nc"}).encode() + b"\n")
    w.write_eof()
    assert await asyncio.wait_for(r.read(), 5) == b"ok\n"
    w.close()
    assert (await page.recv())["via"] == "nc"
    await php.close()


async def test_pipelined_lines_get_one_reply_each_in_order(deployment):
    srv = deployment.server(**sandbox_env())
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    good = lambda i: json.dumps({"uid": qr["uid"], "ticket": qr["ticket"], "i": i})  # noqa: E731
    lines, expected = [], []
    for i in range(60):
        if i % 3 == 2:
            lines.append("this is not json" if i % 2 else json.dumps({"uid": qr["uid"], "ticket": "x"}))
            expected.append("fail")
        else:
            lines.append(good(i))
            expected.append("ok")
    php = await PushClient.connect(push_port(srv))
    await php.write(("\n".join(lines) + "\n").encode())  # all at once, before reading anything
    assert [(await php.reply()).strip() for _ in lines] == expected
    got = [(await page.recv())["i"] for _ in range(expected.count("ok"))]
    assert got == [i for i in range(60) if i % 3 != 2]  # delivered in order, too
    await php.close()


async def test_garbage_long_lines_and_silent_clients_cannot_hurt_the_port(deployment):
    srv = deployment.server(**sandbox_env(KEFU_PUSH_MAX_LINE="1024", KEFU_PUSH_IDLE_TIMEOUT="1.5"))
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    ok_line = json.dumps({"uid": qr["uid"], "ticket": qr["ticket"], "still": "fine"}).encode() + b"\n"
    php = await PushClient.connect(push_port(srv))
    for junk in (b"not json", b"[1,2]", b"{}", b'{"uid":', b"\xff\xfe\x00", b"", b"   ", b"null",
                 b'{"ticket":"x"}', b'{"uid":"a:b","ticket":"x"}', b'{"uid":"u","ticket":"T","x":NaN}',
                 b'{"openid":"has space"}', b'{"broadcast":"yes"}', b"\r"):
        await php.write(junk + b"\n")
        assert await php.reply() == "fail\n", junk
    await php.write(ok_line)
    assert await php.reply() == "ok\n"

    # Over-long lines are skipped up to their newline, answered `fail`, and the socket goes on:
    # just over the limit, and 4 MiB (which the port must not buffer whole).
    for size in (1100, 4 * 1024 * 1024):
        await php.write(b'{"uid":"' + b"x" * size + b'","ticket":"T"}\n' + ok_line)
        assert await php.reply(timeout=10) == "fail\n"
        assert await php.reply() == "ok\n"
    await php.close()
    assert [f["still"] for f in await page.nothing_for(0.5)] == ["fine"] * 3

    # A client that never finishes its line, and one that sends nothing, are closed when idle.
    half = await PushClient.connect(push_port(srv))
    await half.write(b'{"uid": "' + qr["uid"].encode())
    mute = await PushClient.connect(push_port(srv))
    start = time.monotonic()
    assert await half.closed(timeout=5) and await mute.closed(timeout=5)
    assert 1.0 < time.monotonic() - start < 4.5
    # A last line cut off by EOF (no newline) is still answered.
    r, w = await asyncio.open_connection("127.0.0.1", push_port(srv))
    w.write(ok_line.rstrip(b"\n"))
    w.write_eof()
    assert await asyncio.wait_for(r.read(), 5) == b"ok\n"
    w.close()

    # The server shrugged all that off.
    assert httpx.get(srv.base_url + "/healthz").status_code == 200
    again = await PushClient.connect(push_port(srv))
    assert await again.send({"uid": qr["uid"], "ticket": qr["ticket"], "still": "fine"}) == "ok\n"
    await again.close()


async def test_with_a_secret_every_line_must_carry_it(deployment):
    # A secret allows binding beyond loopback; connect over loopback all the same.
    srv = deployment.server(**sandbox_env(KEFU_PUSH_HOST="0.0.0.0", KEFU_PUSH_SECRET="s3cret-push"))
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    php = await PushClient.connect(push_port(srv))
    body = {"uid": qr["uid"], "ticket": qr["ticket"], "hello": "world"}
    assert await php.send(body) == "fail\n"
    assert await php.send(body | {"secret": "guess"}) == "fail\n"
    assert await php.send(body | {"secret": 12345}) == "fail\n"
    assert await php.send(body | {"secret": "s3cret-push"}) == "ok\n"
    assert await page.recv() == body  # the secret is not passed on
    await php.close()


def test_a_public_push_port_without_a_secret_refuses_to_start(tmp_path):
    srv = KefuServer({"KEFU_DATA_DIR": str(tmp_path), "KEFU_PUSH_HOST": "0.0.0.0"}, tmp_path / "s.log")
    r = srv.cli("serve", check=False)
    assert r.returncode != 0 and "KEFU_PUSH_SECRET" in r.stderr


def test_production_refuses_to_start_without_its_push_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"KEFU_DATA_DIR": str(tmp_path), "KEFU_ENV": "production", "KEFU_WECHAT_MODE": "real",
               "KEFU_MP_APPID": "wx_a", "KEFU_MP_SECRET": "s", "KEFU_PUSH_PORT": str(taken.getsockname()[1])}
        srv = KefuServer(env, tmp_path / "p.log")
        r = srv.cli("serve", check=False)
    assert r.returncode != 0


async def test_a_push_on_one_server_reaches_a_page_on_another(redis_deployment):
    d = redis_deployment
    a = d.server(**sandbox_env())
    b = d.server(**sandbox_env())
    qr = new_qr(b)
    page = await open_page(b, qr)
    php = await PushClient.connect(push_port(a))
    assert await php.send({"uid": qr["uid"], "ticket": qr["ticket"], "from": "A's port"}) == "ok\n"
    assert (await page.recv())["from"] == "A's port"
    assert await php.send({"uid": qr["uid"], "ticket": "wrong", "from": "A"}) == "fail\n"
    assert api_push(a, {"uid": qr["uid"], "from": "A's HTTP"}).json() == {"delivered": True, "nodes": 1}
    assert (await page.recv())["from"] == "A's HTTP"
    # A page bound on A to the code B made (the store is shared), reached from B.
    page_a = await open_page(a, qr)
    b_php = await PushClient.connect(push_port(b))
    assert await b_php.send({"broadcast": True, "to": "all pages"}) == "ok\n"
    assert (await page.recv())["to"] == (await page_a.recv())["to"] == "all pages"
    b.kill9()
    await asyncio.sleep(0.5)
    assert await php.send({"uid": qr["uid"], "ticket": qr["ticket"], "n": 1}) == "ok\n"  # page_a
    assert (await page_a.recv())["n"] == 1
    await php.close()


def _listeners(port: int) -> int:
    """Listening IPv4 sockets on `port` (Linux /proc): one per worker with SO_REUSEPORT."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if r[1].endswith(f":{port:04X}") and r[3] == "0A")


async def test_several_workers_share_the_push_port(redis_deployment):
    port = free_port()
    srv = redis_deployment.server(**sandbox_env(KEFU_WORKERS="2", KEFU_PUSH_PORT=str(port)))
    # Every worker listens (SO_REUSEPORT); the kernel spreads connections over them, and a page
    # bound in either worker is reached from both, through Redis.
    for _ in range(50):  # /healthz answered from one worker; the other may still be starting
        if _listeners(port) == 2:
            break
        await asyncio.sleep(0.1)
    assert _listeners(port) == 2
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    clients = [await PushClient.connect(port) for _ in range(8)]
    for i, c in enumerate(clients):
        assert await c.send({"uid": qr["uid"], "ticket": qr["ticket"], "i": i}) == "ok\n"
    assert sorted([(await page.recv())["i"] for _ in clients]) == list(range(8))
    for c in clients:
        await c.close()
    # The dev page's simulated scan works whichever worker made the code (it sends the uid too).
    for _ in range(4):
        qr = new_qr(srv)
        page = await open_page(srv, qr)
        assert httpx.get(srv.base_url + qr["image"]).status_code == 200  # whichever worker answers
        r = httpx.post(srv.base_url + "/dev/simulate-scan", json={"ticket": qr["ticket"], "uid": qr["uid"]})
        assert r.status_code == 200
        assert "token" in await page.recv()
