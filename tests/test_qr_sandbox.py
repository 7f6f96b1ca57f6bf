"""QR login in the dev sandbox (no WeChat at all), and the page socket's guards, on both backends."""

from __future__ import annotations

import asyncio
import signal
from urllib.parse import quote

import httpx

from kefu.wechat import build_scan_xml
from tests.fake_wechat import adeliver_event, averify_url
from tests.support.qrflow import (
    SANDBOX_CALLBACK_TOKEN,
    api_push,
    bind_frame,
    callback_url,
    new_qr,
    open_page,
    sandbox_env,
)
from tests.support.wsclient import WsClient


async def test_sandbox_renders_the_code_and_simulates_the_scan(deployment):
    srv = deployment.server(**sandbox_env())
    qr = new_qr(srv)
    assert qr["sandbox"] is True and qr["image"] == "/qr-image/" + quote(qr["ticket"], safe="")
    img = httpx.get(srv.base_url + qr["image"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/svg+xml"
    assert img.content.startswith(b"<svg")
    assert httpx.get(srv.base_url + "/qr-image/" + "x" * 600).status_code == 404

    page = await open_page(srv, qr)
    r = httpx.post(srv.base_url + "/dev/simulate-scan", json={"ticket": qr["ticket"]})
    assert r.status_code == 200 and r.json()["openid"] == "sbxoa_dev"
    pushed = await page.recv()
    assert set(pushed) == {"ticket", "expire_seconds", "uid", "token"}
    me = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {pushed['token']}"})
    assert me.json()["openid"] == "sbxoa_dev"

    for body, status in (({"ticket": "gQHunknown=="}, 404), ({}, 400),
                         ({"ticket": qr["ticket"], "openid": "bad openid!"}, 400)):
        assert httpx.post(srv.base_url + "/dev/simulate-scan", json=body).status_code == status


async def test_sandbox_callbacks_use_the_documented_dev_token(deployment):
    srv = deployment.server(**sandbox_env())
    url = callback_url(srv)
    assert (await averify_url(url, SANDBOX_CALLBACK_TOKEN, "dev-echo")).body == "dev-echo"
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    xml = build_scan_xml(to_user="gh_sandbox00000", from_user="oa_from_callback", scene=qr["uid"],
                         ticket=qr["ticket"], subscribe=True)
    assert (await adeliver_event(url, "some-other-token", xml, attempts=1)).attempts[0].status == 403
    assert (await adeliver_event(url, SANDBOX_CALLBACK_TOKEN, xml)).accepted
    assert (await page.recv())["uid"] == qr["uid"]


async def test_page_sockets_heartbeat_errors_and_drain(deployment):
    srv = deployment.server(**sandbox_env(KEFU_HEARTBEAT_TIMEOUT="1.5"))
    qr = new_qr(srv)
    silent = await open_page(srv, qr)  # bound, but sends nothing (not even protocol pings)
    silent_unbound = await WsClient.connect(srv.ws_url + "/qr", v2=False, ping_interval=None)
    pinger = await open_page(srv, qr, v2=True)

    async def ping_loop() -> None:
        for _ in range(10):
            await pinger.send({"cmd": "ping"})
            assert (await pinger.recv())["cmd"] == "pong"  # v2 pages get pongs; legacy pages do not
            await asyncio.sleep(0.3)

    pinging = asyncio.create_task(ping_loop())
    assert await silent_unbound.closed(timeout=6) == (4408, "heartbeat timeout")
    await pinging
    assert (await silent.closed(timeout=1))[0] == 4408
    assert api_push(srv, {"uid": qr["uid"], "alive": True}).json()["delivered"] is True
    assert (await pinger.recv())["alive"] is True

    # Bad frames get error frames and the socket carries on.
    for frame, code in (("not json", "bad_json"), ("[1]", "bad_json"), ({"cmd": "sync"}, "unknown_cmd"),
                        ({"hello": 1}, "bad_frame"), ("x" * 5000, "too_large")):
        await pinger.send(frame)
        err = await pinger.recv()
        assert (err["cmd"], err["code"]) == ("error", code), err
    await pinger.conn.send(b"\x00binary")
    assert (await pinger.recv())["code"] == "binary"
    await pinger.send(bind_frame(qr))
    assert await pinger.recv() == bind_frame(qr)  # re-sending the same binding just echoes

    srv.proc.send_signal(signal.SIGTERM)
    assert (await pinger.closed(timeout=15))[0] == 1001

