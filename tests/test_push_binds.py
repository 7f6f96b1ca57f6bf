"""Pushes to any web page, through real servers and sockets: signed binds (tokens a backend mints),
seed binds (the Workerman and GatewayWorker pages), groups, online and count queries — over HTTP
and the TCP port, on one process and across two. docs/push.md is what these check."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support import services
from tests.support.proxy import CuttableProxy
from tests.support.pushpages import (
    OTHER_SECRET,
    page,
    push_env,
    refused,
    signed_page,
    tampered,
    token,
    unsigned,
)
from tests.support.qrflow import PushClient, api_push, new_qr, open_page, push_port
from tests.support.server import KefuServer


def wrapped(to: str, data: dict, group: str | None = None) -> dict:
    frame: dict = {"cmd": "push", "to": to}
    if group is not None:
        frame["group"] = group
    frame["data"] = data
    return frame


async def eventually(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def count(srv: KefuServer, group: str) -> int:
    r = api_push(srv, {"kefu": "count", "group": group})
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


async def test_signed_pages_get_pushes_to_their_uid_their_groups_and_everyone(deployment):
    srv = deployment.server(**push_env())
    tab1 = await signed_page(srv, "42", ("news",))
    tab2 = await signed_page(srv, "42")
    other = await signed_page(srv, "7", ("news",))
    qr = new_qr(srv)
    login_page = await open_page(srv, qr)
    port = await PushClient.connect(push_port(srv))

    # To a uid: every socket of it (both tabs), over HTTP and the port; nobody else.
    r = api_push(srv, {"uid": "42", "order": 1})
    assert r.json() == {"delivered": True, "nodes": 1}
    for tab in (tab1, tab2):
        assert await tab.recv() == wrapped("uid", {"uid": "42", "order": 1})
    assert await port.send({"uid": 42, "order": 2, "secret": "x"}) == "ok\n"  # an integer, as PHP sends
    assert (await tab1.recv())["data"] == {"uid": 42, "order": 2}
    assert (await tab2.recv())["data"]["order"] == 2
    # To a group: the token's groups.
    assert await port.send({"group": "news", "title": "上新了"}) == "ok\n"
    for p in (tab1, other):
        assert await p.recv() == wrapped("group", {"group": "news", "title": "上新了"}, "news")
    # To everyone: every bound page, the QR login page too (as it is, not wrapped).
    assert api_push(srv, {"broadcast": True, "notice": "22:00"}).json()["delivered"] is True
    for p in (tab1, tab2, other):
        assert (await p.recv())["to"] == "all"
    assert await login_page.recv() == {"broadcast": True, "notice": "22:00"}
    assert await tab2.nothing_for(0.3) == [] and await other.nothing_for(0.1) == []

    # Pushes are not stored: to nobody is `fail` / delivered false, and gone.
    assert await port.send({"uid": "nobody", "x": 1}) == "fail\n"
    assert api_push(srv, {"group": "empty", "x": 1}).json() == {"delivered": False, "nodes": 0}
    assert api_push(srv, {"task_id": "task 1", "x": 1}).json()["delivered"] is False
    # A uid without its ticket never reaches a QR page over the port.
    assert await port.send({"uid": qr["uid"], "x": 1}) == "fail\n"

    # Online and count.
    assert await port.send({"kefu": "online", "uid": "42"}) == "ok\n"
    assert await port.send({"kefu": "online", "uid": "nobody"}) == "fail\n"
    assert api_push(srv, {"kefu": "online", "uid": "7"}).json() == {"uid": "7", "online": True}
    assert await port.send({"kefu": "count", "group": "news"}) == '{"count":2}\n'
    assert count(srv, "nothing-here") == 0

    # Join: the uid's sockets join now (and are told), and after every reconnect.
    r = api_push(srv, {"kefu": "join", "uid": "7", "group": "vip"})
    assert r.json() == {"ok": True, "uid": "7", "group": "vip", "nodes": 1}
    assert await other.recv() == {"cmd": "joined", "group": "vip", "groups": ["news", "vip"]}
    assert await port.send({"group": "vip", "offer": 1}) == "ok\n"
    assert (await other.recv())["group"] == "vip"
    again = await signed_page(srv, "7")
    assert api_push(srv, {"kefu": "count", "group": "vip"}).json() == {"group": "vip", "count": 2}
    # Leave, over the port: every socket of the uid, the stored membership too.
    assert await port.send({"kefu": "leave", "uid": "7", "group": "vip"}) == "ok\n"
    assert (await other.recv())["cmd"] == "left"
    assert (await again.recv())["cmd"] == "left"
    assert await port.send({"group": "vip", "offer": 2}) == "fail\n"
    assert await port.send({"kefu": "join", "uid": "7"}) == "fail\n"  # no group
    assert await port.send({"kefu": "nope", "uid": "7"}) == "fail\n"
    assert api_push(srv, {"kefu": "count"}).status_code == 400

    # A closed socket leaves the count.
    await tab1.close()
    await eventually(lambda: _assert_count(srv, "news", 1))
    await port.close()


async def _assert_count(srv: KefuServer, group: str, n: int) -> None:
    assert count(srv, group) == n


async def test_pipelined_commands_act_in_the_order_of_their_lines(deployment):
    """Pushes of one connection run at once, but a join or leave is a barrier: a backend that
    writes join, push, leave, push in one go gets ok, ok, ok, fail, and the page sees them in order."""
    srv = deployment.server(**push_env())
    p = await signed_page(srv, "9")
    port = await PushClient.connect(push_port(srv))
    lines = [{"kefu": "join", "uid": "9", "group": "flash"}, {"group": "flash", "n": 1},
             {"uid": "9", "n": 2}, {"kefu": "count", "group": "flash"},
             {"kefu": "leave", "uid": "9", "group": "flash"}, {"group": "flash", "n": 3}] * 3
    await port.write(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    replies = [await port.reply() for _ in lines]
    assert replies == ["ok\n", "ok\n", "ok\n", '{"count":1}\n', "ok\n", "fail\n"] * 3
    seen = [await p.recv() for _ in range(4 * 3)]
    assert [f["data"]["n"] if f["cmd"] == "push" else f["cmd"] for f in seen] == ["joined", 1, 2, "left"] * 3
    await port.close()


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_bind_refusals_have_their_codes_and_bind_nothing(deployment):
    srv = deployment.server(**push_env(KEFU_QR_BIND_TIMEOUT="3"))
    p = await page(srv)
    assert await refused(p, {"cmd": "bind", "token": token("42", ttl=-10)}) == "token_expired"
    assert await refused(p, {"cmd": "bind", "token": token("42", audience="other-site")}) == "wrong_audience"
    assert await refused(p, {"cmd": "bind", "token": tampered(token("42"), sub="1")}) == "bad_token"
    assert await refused(p, {"cmd": "bind", "token": tampered(token("42"), groups=["admins"])}) == "bad_token"
    assert await refused(p, {"cmd": "bind", "token": token("42", secret=OTHER_SECRET)}) == "bad_token"
    assert await refused(p, {"cmd": "bind", "token": unsigned("42")}) == "bad_token"
    assert await refused(p, {"cmd": "bind", "token": "not.a.jwt"}) == "bad_token"
    assert await refused(p, {"cmd": "bind"}) == "bad_frame"
    # Seed binds are off by default: the bare uid and GatewayWorker's init are refused.
    assert await refused(p, "123") == "seed_binds_off"
    assert await refused(p, {"type": "init", "task_id": "task 123456"}) == "seed_binds_off"
    assert api_push(srv, {"uid": "42", "x": 1}).json()["delivered"] is False
    assert api_push(srv, {"task_id": "task 123456", "x": 1}).json()["delivered"] is False
    # Refused binds do not stop the bind deadline.
    assert await p.closed(timeout=5) == (4410, "bind timeout")

    # Guessing tokens costs strikes like any bad frame: 4429.
    guesser = await page(srv)
    for i in range(12):
        await guesser.send({"cmd": "bind", "token": token(str(i), secret=OTHER_SECRET)})
    assert (await guesser.closed(timeout=5))[0] == 4429

    # Without a bind secret, token binds are off.
    srv.stop()
    plain = deployment.server(**push_env(KEFU_PUSH_BIND_SECRET=""))
    q = await page(plain)
    assert await refused(q, {"cmd": "bind", "token": token("42")}) == "token_binds_off"


def test_a_short_bind_secret_refuses_to_start(tmp_path):
    srv = KefuServer({"KEFU_DATA_DIR": str(tmp_path), "KEFU_PUSH_BIND_SECRET": "short"}, tmp_path / "log")
    r = srv.cli("check", check=False)
    assert r.returncode == 2 and "KEFU_PUSH_BIND_SECRET must be at least 32 bytes" in r.stderr


async def test_seed_binds_when_allowed_work_like_the_old_pages(deployment):
    srv = deployment.server(**push_env(seed=True, KEFU_HEARTBEAT_TIMEOUT="3"))
    log = srv.log_path.read_text()
    assert "seed binds are ON (KEFU_PUSH_SEED_BINDS=true)" in log and "anyone who knows" in log
    port = await PushClient.connect(push_port(srv))

    # Workerman: the first text frame is the uid; nothing comes back; pushes arrive as sent.
    workerman = await page(srv, v2=False)
    await workerman.send("123")
    assert await workerman.nothing_for(0.3) == []
    assert await port.send({"uid": 123, "msg": "你有一条新订单"}) == "ok\n"
    assert await workerman.recv() == {"uid": 123, "msg": "你有一条新订单"}
    await workerman.send("ping")  # later text is not a new bind (Workerman read the first frame only)
    assert await workerman.nothing_for(0.3) == []
    assert await port.send({"uid": "123", "n": 2}) == "ok\n"
    assert (await workerman.recv())["n"] == 2

    # GatewayWorker: {"type": "init", "task_id"}; the backend's line names the same task_id.
    gateway = await page(srv, v2=False)
    await gateway.send({"type": "init", "task_id": "task 123456"})
    await gateway.send({"type": "ping"})  # its heartbeat: no answer, no error
    assert await gateway.nothing_for(0.3) == []
    assert await port.send({"task_id": "task 123456", "status": "done"}) == "ok\n"
    assert await gateway.recv() == {"task_id": "task 123456", "status": "done"}
    assert api_push(srv, {"kefu": "online", "task_id": "task 123456"}).json()["online"] is True

    # A v2 seed page is told it is bound; seed pages can be put in groups by the backend too.
    modern = await page(srv)
    await modern.send("555")
    assert await modern.recv() == {"cmd": "bound", "uid": "555", "groups": []}
    assert api_push(srv, {"kefu": "join", "uid": "555", "group": "g"}).json()["nodes"] == 1
    assert (await modern.recv())["cmd"] == "joined"
    assert await port.send({"group": "g", "x": 1}) == "ok\n"
    assert await modern.recv() == {"group": "g", "x": 1}  # seed pages get the push as it is

    # Old pages send no heartbeat: kefu's protocol pings (answered by the client) keep them.
    await asyncio.sleep(4.5)
    assert await port.send({"uid": 123, "still": "here"}) == "ok\n"
    assert (await workerman.recv())["still"] == "here"
    # A page whose pings go unanswered is still closed (4408).
    silent = await page(srv, v2=False)
    await silent.send("999")
    silent.conn.transport.pause_reading()  # a dead tab: reads nothing, so answers no ping
    await asyncio.sleep(5)
    silent.conn.transport.resume_reading()
    assert (await silent.closed(timeout=5))[0] == 4408

    # The QR page socket still takes no bare text.
    qr = await open_page(srv)
    await qr.send("123")
    assert (await qr.recv())["code"] == "bad_json"
    await port.close()


async def test_groups_counts_and_online_across_two_processes(redis_deployment):
    one = redis_deployment.server(**push_env())
    two = redis_deployment.server(**push_env())
    a = await signed_page(one, "42", ("news",))
    b = await signed_page(two, "42")
    c = await signed_page(two, "8", ("news",))

    # The uid's sockets on both processes join, whichever process was asked.
    r = api_push(two, {"kefu": "join", "uid": "42", "group": "vip"})
    assert r.json()["nodes"] == 2
    assert (await a.recv())["cmd"] == (await b.recv())["cmd"] == "joined"
    port = await PushClient.connect(push_port(one))
    assert await port.send({"group": "vip", "n": 1}) == "ok\n"
    assert (await a.recv())["data"] == (await b.recv())["data"] == {"group": "vip", "n": 1}
    assert await port.send({"uid": "8", "n": 2}) == "ok\n"  # a page on the other process
    assert (await c.recv())["data"]["n"] == 2
    assert await port.send({"kefu": "online", "uid": "8"}) == "ok\n"
    assert api_push(one, {"kefu": "online", "uid": "nobody"}).json()["online"] is False

    # Sockets in a group, counted over both processes, from either.
    await eventually(lambda: _assert_count(one, "news", 2))
    await eventually(lambda: _assert_count(two, "vip", 2))
    await c.close()
    await eventually(lambda: _assert_count(one, "news", 1))
    two.stop()  # a stopped process stops counting at once
    await eventually(lambda: _assert_count(one, "vip", 1))
    assert await port.send({"kefu": "count", "group": "vip"}) == '{"count":1}\n'
    await port.close()


async def test_a_group_change_is_in_effect_on_every_node_once_answered(redis_deployment):
    """The uid's page is on a node whose Redis is 50 ms away: a join answered on another node has
    already put it in the group there (a push right after reaches it, the count counts it), and a
    leave has taken it out (the next push to the group fails)."""
    far = CuttableProxy(services.REDIS_HOST, services.REDIS_PORT, lag=0.05)
    await far.start()
    try:
        near = redis_deployment.server(**push_env())
        # started from a thread: the proxy runs on this test's event loop
        distant = await asyncio.to_thread(redis_deployment.server, **push_env(),
                                          REDIS_URL=services.redis_url_via(far.port))
        p = await signed_page(distant, "42")
        port = await PushClient.connect(push_port(near))
        for n in range(3):
            assert await port.send({"kefu": "join", "uid": "42", "group": "vip"}) == "ok\n"
            assert await port.send({"group": "vip", "n": n}) == "ok\n"
            assert await port.send({"kefu": "count", "group": "vip"}) == '{"count":1}\n'
            assert await port.send({"kefu": "leave", "uid": "42", "group": "vip"}) == "ok\n"
            assert await port.send({"group": "vip", "n": -1}) == "fail\n"
            assert await port.send({"kefu": "count", "group": "vip"}) == '{"count":0}\n'
        seen = [await p.recv() for _ in range(3 * 3)]
        assert [f["data"]["n"] if f["cmd"] == "push" else f["cmd"] for f in seen] == \
            ["joined", 0, "left", "joined", 1, "left", "joined", 2, "left"]
        await port.close()
    finally:
        await far.cut()


async def test_the_sdk_is_served_to_any_origin(deployment):
    srv = deployment.server(**push_env())
    r = httpx.get(srv.base_url + "/sdk/push.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "export class KefuPush" in r.text


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_push_page_sockets_count_against_the_page_socket_cap(deployment):
    srv = deployment.server(**push_env(KEFU_MAX_QR_SOCKETS="2"))
    qr_page = await open_page(srv)
    push_page = await signed_page(srv, "42")
    with pytest.raises(InvalidStatus) as e:
        await page(srv)
    assert e.value.response.status_code == 429
    await push_page.close()
    await eventually(lambda: _opens(srv))
    await qr_page.close()


async def _opens(srv: KefuServer) -> None:
    try:
        p = await page(srv)
    except Exception as e:
        raise AssertionError(f"not admitted yet: {e}") from e
    await p.close()
