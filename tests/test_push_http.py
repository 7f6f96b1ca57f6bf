"""`POST /api/push`: API-key auth, `delivered` true/false, pushes to a uid, an openid, all pages."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.qrflow import API_KEY, api_push, new_qr, open_page, sandbox_env
from tests.support.wsclient import WsClient


async def test_http_push_auth_targets_and_delivery(deployment):
    srv = deployment.server(**sandbox_env())
    assert api_push(srv, {"uid": "u", "x": 1}, key=None).status_code == 401
    r = api_push(srv, {"uid": "u", "x": 1}, key="wrong-key")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    bad = httpx.post(srv.base_url + "/api/push", content=b"{nope", headers={"X-Api-Key": API_KEY})
    assert bad.status_code == 400
    for body in ([1], {"data": 1}, {"uid": "not ok!"}, {"openid": 5}, {"uid": "u", "ticket": ""}):
        r = api_push(srv, body)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", body

    qr = new_qr(srv)
    page = await open_page(srv, qr)
    r = api_push(srv, {"uid": qr["uid"], "kind": "no ticket"})  # the API key stands in for it
    assert r.status_code == 200 and r.json() == {"delivered": True, "nodes": 1}
    assert await page.recv() == {"uid": qr["uid"], "kind": "no ticket"}
    assert api_push(srv, {"uid": qr["uid"], "ticket": qr["ticket"], "kind": "ticket"}).json()["delivered"]
    assert (await page.recv())["kind"] == "ticket"
    assert api_push(srv, {"uid": qr["uid"], "ticket": "other", "kind": "x"}).json()["delivered"] is False
    assert api_push(srv, {"uid": "nobody0000", "kind": "x"}).json() == {"delivered": False, "nodes": 0}
    assert await page.nothing_for(0.4) == []

    # To an openid: the user's chat sockets, not the agents'.
    token, openid = srv.user_token("http-pushed")
    phone = await WsClient.connect(srv.ws_url, token, v2=False)
    srv.create_agent("agent-http")
    agent = await WsClient.connect(srv.ws_url, srv.agent_token("agent-http"))
    r = api_push(srv, {"openid": openid, "msg": "工单已处理", "order": 7})
    assert r.json()["delivered"] is True
    assert await phone.recv() == {"openid": openid, "msg": "工单已处理", "order": 7}
    assert await agent.nothing_for(0.3) == []
    await phone.close()
    for _ in range(20):  # the server forgets the socket right after the close handshake
        if api_push(srv, {"openid": openid, "msg": "gone?"}).json()["delivered"] is False:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("a closed socket still counts as delivered")

    # Broadcast: every bound page, whichever code; not unbound pages, not chat sockets.
    qr2 = new_qr(srv)
    page2 = await open_page(srv, qr2)
    unbound = await open_page(srv)
    user = await WsClient.connect(srv.ws_url, token)
    assert api_push(srv, {"broadcast": True, "notice": "hi all"}).json()["delivered"] is True
    assert (await page.recv())["notice"] == (await page2.recv())["notice"] == "hi all"
    assert await unbound.nothing_for(0.3) == [] and await user.nothing_for(0.1) == []


async def test_the_push_api_is_off_without_a_key(deployment):
    srv = deployment.server(KEFU_PUSH_PORT="0")
    r = api_push(srv, {"uid": "u", "x": 1})
    assert r.status_code == 503 and r.json()["message"].startswith("push API disabled")
