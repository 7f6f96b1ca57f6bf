"""QR scan login end to end, in real mode against the fake WeChat, on both backends.

kefu asks the (fake) Official Account for the QR code; the (fake) WeChat callback driver signs and
POSTs real event XML to `/wechat/callback`, and retries like WeChat; the page is a real socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from kefu.wechat import WeChatCrypto, build_event_xml, build_scan_xml
from tests.fake_wechat import OA_APPID, FakeWeChat, averify_url, signed_query
from tests.support.qrflow import (
    AES_KEY,
    OA_TOKEN,
    api_push,
    bind_frame,
    callback_url,
    new_qr,
    open_page,
    real_env,
)


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fw:
        yield fw


def me(srv, token: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"})


async def test_the_whole_flow_from_qrcode_to_a_working_token(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat))
    qr = new_qr(srv)
    assert {"ticket", "expire_seconds", "uid"} <= set(qr) and qr["sandbox"] is False
    created = fake_wechat.qrcode(qr["ticket"])  # the OA app made it: QR_STR_SCENE, scene = uid
    assert (created.appid, created.action_name, created.scene) == (OA_APPID, "QR_STR_SCENE", qr["uid"])
    assert created.expire_seconds == qr["expire_seconds"] == 300
    assert qr["image"] == f"{fake_wechat.mp_base}/cgi-bin/showqrcode?ticket={quote(qr['ticket'], safe='')}"
    assert httpx.get(qr["image"]).status_code == 200
    assert len({new_qr(srv)["uid"] for _ in range(5)} | {qr["uid"]}) == 6

    page = await open_page(srv, qr)
    xml = fake_wechat.scan_xml(qr["ticket"], "oa_Scanner-1", subscribe=True)  # a new follower
    delivery = await fake_wechat.adeliver_event(callback_url(srv), OA_TOKEN, xml)
    assert delivery.accepted and delivery.count == 1 and delivery.attempts[0].body == "success"
    assert delivery.attempts[0].elapsed < 1.0
    pushed = await page.recv()
    assert set(pushed) == {"ticket", "expire_seconds", "uid", "token"}
    assert (pushed["uid"], pushed["ticket"], pushed["expire_seconds"]) == (qr["uid"], qr["ticket"], 300)
    assert me(srv, pushed["token"]).json() == {"role": "user", "openid": "oa_Scanner-1", "unread": 0,
                                               "agent_read_upto": 0, "user_read_upto": 0}

    # An existing follower scans a second code: SCAN with the bare scene; same user, new token.
    qr2 = new_qr(srv)
    page2 = await open_page(srv, qr2)
    scan = fake_wechat.scan_xml(qr2["ticket"], "oa_Scanner-1", subscribe=False)
    assert (await fake_wechat.adeliver_event(callback_url(srv), OA_TOKEN, scan)).accepted
    again = await page2.recv()
    assert again["uid"] == qr2["uid"] and again["token"] != pushed["token"]
    assert me(srv, again["token"]).json()["openid"] == "oa_Scanner-1"
    assert await page.nothing_for(0.3) == []

    # A code logs in once: someone else scanning the used code pushes nothing.
    late = fake_wechat.scan_xml(qr["ticket"], "oa_Somebody-else", subscribe=False)
    assert (await fake_wechat.adeliver_event(callback_url(srv), OA_TOKEN, late)).accepted
    assert await page.nothing_for(1.0) == []
    assert "QR code already used" in srv.log_tail(200)


async def test_url_check_and_bad_signatures_are_refused_and_do_nothing(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat))
    url = callback_url(srv)
    ok = await averify_url(url, OA_TOKEN, "echo-1234567890")
    assert (ok.status, ok.body) == (200, "echo-1234567890")
    r = httpx.get(url, params=signed_query(OA_TOKEN) | {"echostr": "e"})
    assert r.headers["content-type"].startswith("text/plain") and r.text == "e"
    assert (await averify_url(url, "not-the-token")).status == 403
    assert httpx.get(url, params={"echostr": "x"}).status_code == 403

    qr = new_qr(srv)
    page = await open_page(srv, qr)
    xml = fake_wechat.scan_xml(qr["ticket"], "oa_victim", subscribe=False, create_time=int(time.time()))
    forged = await fake_wechat.adeliver_event(url, "forged-token", xml, attempts=1)
    assert [a.status for a in forged.attempts] == [403] and not forged.accepted
    unsigned = httpx.post(url, content=xml, headers={"Content-Type": "text/xml"})
    assert unsigned.status_code == 403
    assert await page.nothing_for(0.8) == []
    # Garbage with a valid signature is a 400, not a crash.
    r = httpx.post(url, params=signed_query(OA_TOKEN), content=b"<xml><oops>")
    assert r.status_code == 400
    # The forged copy was not remembered as seen: the genuine one (same CreateTime) still works.
    real = await fake_wechat.adeliver_event(url, OA_TOKEN, xml)
    assert real.accepted
    assert (await page.recv())["uid"] == qr["uid"]


async def test_a_page_binds_only_with_its_ticket(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat, KEFU_ERROR_STRIKES="4"))
    qr = new_qr(srv)
    other = new_qr(srv)
    page = await open_page(srv)
    for frame, code in (({**bind_frame(qr), "ticket": other["ticket"]}, "bad_ticket"),
                        ({**bind_frame(qr), "uid": "0123456789abcdef0123"}, "bad_ticket"),
                        ({"uid": qr["uid"]}, "bad_frame"),
                        ({**bind_frame(qr), "uid": "no spaces allowed"}, "bad_frame")):
        await page.send(frame)
        err = await page.recv()
        assert err["cmd"] == "error" and err["code"] == code, err
    # Unbound, the page is nobody: pushes and the login for that uid do not reach it.
    assert api_push(srv, {"uid": qr["uid"], "n": 1}).json()["delivered"] is False
    bound = await open_page(srv, qr)
    scan = fake_wechat.scan_xml(qr["ticket"], "oa_real_user", subscribe=False)
    assert (await fake_wechat.adeliver_event(callback_url(srv), OA_TOKEN, scan)).accepted
    assert "token" in await bound.recv()
    assert await page.nothing_for(0.5) == []

    # The same socket may move on to a fresh code (the page's "new QR code" button).
    await page.send(bind_frame(other))
    assert await page.recv() == bind_frame(other)
    assert api_push(srv, {"uid": other["uid"], "ticket": other["ticket"], "n": 2}).json()["delivered"]
    assert (await page.recv())["n"] == 2
    # Guessing tickets is abuse: error strikes end in 4429.
    for _ in range(6):
        await page.send({**bind_frame(qr), "ticket": "guess"})
    code, reason = await page.closed()
    assert (code, reason) == (4429, "too many errors")


async def test_expired_codes_neither_bind_nor_log_in(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat, KEFU_QR_EXPIRE_SECONDS="2"))
    qr = new_qr(srv)
    assert qr["expire_seconds"] == 2
    page = await open_page(srv, qr)
    scan = fake_wechat.scan_xml(qr["ticket"], "oa_too_late", subscribe=True)
    await asyncio.sleep(2.5)
    late_page = await open_page(srv)
    await late_page.send(bind_frame(qr))
    assert (await late_page.recv())["code"] == "bad_ticket"
    delivery = await fake_wechat.adeliver_event(callback_url(srv), OA_TOKEN, scan)
    assert delivery.accepted and delivery.count == 1  # WeChat is answered; nothing else happens
    assert await page.nothing_for(1.0) == []
    assert "unknown or expired QR code" in srv.log_tail(200)


async def test_scans_of_unknown_scenes_or_with_another_ticket_push_nothing(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat))
    url = callback_url(srv)
    qr, other = new_qr(srv), new_qr(srv)
    page = await open_page(srv, qr)
    ts = int(time.time())
    for i, (scene, ticket, why) in enumerate((
            (qr["uid"], other["ticket"], "ticket does not match"),
            ("feedfacefeedfacefeed", qr["ticket"], "unknown or expired QR code"),
            ("not a kefu scene!", qr["ticket"], "is not a kefu uid"))):
        xml = build_scan_xml(to_user="gh_fake00000001", from_user="oa_prober", scene=scene,
                             ticket=ticket, subscribe=False, create_time=ts + i)
        assert (await fake_wechat.adeliver_event(url, OA_TOKEN, xml)).accepted
        await asyncio.sleep(0.3)
        assert why in srv.log_tail(50)
    # A plain follow (no QR) and a text message are acknowledged and ignored.
    follow = build_event_xml(to_user="gh_fake00000001", from_user="oa_follower", event="subscribe")
    assert (await fake_wechat.adeliver_event(url, OA_TOKEN, follow)).accepted
    assert await page.nothing_for(0.5) == []
    # The code is untouched by all that: its real scan still logs in.
    real = fake_wechat.scan_xml(qr["ticket"], "oa_owner", subscribe=False)
    assert (await fake_wechat.adeliver_event(url, OA_TOKEN, real)).accepted
    assert "token" in await page.recv()


async def test_duplicate_callbacks_act_once(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat))
    url = callback_url(srv)
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    xml = fake_wechat.scan_xml(qr["ticket"], "oa_dup", subscribe=True, create_time=int(time.time()))
    deliveries = await asyncio.gather(*(fake_wechat.adeliver_event(url, OA_TOKEN, xml) for _ in range(4)))
    assert all(d.accepted for d in deliveries)
    assert "token" in await page.recv()
    assert await page.nothing_for(1.0) == []

    # Dedupe on its own, apart from a code logging in once: the first delivery finds no page
    # (so the code stays usable); its retry, once a page is there, must still be ignored.
    qr2 = new_qr(srv)
    ts = int(time.time())
    first = fake_wechat.scan_xml(qr2["ticket"], "oa_dup2", subscribe=False, create_time=ts)
    assert (await fake_wechat.adeliver_event(url, OA_TOKEN, first)).accepted
    await asyncio.sleep(0.5)
    assert "no page is bound" in srv.log_tail(100)
    page2 = await open_page(srv, qr2)
    assert (await fake_wechat.adeliver_event(url, OA_TOKEN, first)).accepted  # a WeChat retry
    assert await page2.nothing_for(1.0) == []
    rescan = fake_wechat.scan_xml(qr2["ticket"], "oa_dup2", subscribe=False, create_time=ts + 1)
    assert (await fake_wechat.adeliver_event(url, OA_TOKEN, rescan)).accepted
    assert (await page2.recv())["uid"] == qr2["uid"]


async def test_safe_mode_callbacks(deployment, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat, KEFU_OA_AES_KEY=AES_KEY))
    url = callback_url(srv)
    crypto = WeChatCrypto(OA_TOKEN, AES_KEY, OA_APPID)
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    xml = fake_wechat.scan_xml(qr["ticket"], "oa_safe_mode", subscribe=True)
    bad = await fake_wechat.adeliver_event(url, OA_TOKEN, xml, crypto=crypto, attempts=1,
                                           extra_query={"msg_signature": "0" * 40})
    assert [a.status for a in bad.attempts] == [403]
    other_app = WeChatCrypto(OA_TOKEN, AES_KEY, "wx_another_app00")
    wrong = await fake_wechat.adeliver_event(url, OA_TOKEN, xml, crypto=other_app, attempts=1)
    assert [a.status for a in wrong.attempts] == [400]
    assert await page.nothing_for(0.5) == []
    good = await fake_wechat.adeliver_event(url, OA_TOKEN, xml, crypto=crypto)
    assert good.accepted
    pushed = await page.recv()
    assert me(srv, pushed["token"]).json()["openid"] == "oa_safe_mode"


async def test_qrcode_refusals_in_real_mode(deployment, fake_wechat):
    env = real_env(fake_wechat)
    no_oa = deployment.server(**{**env, "KEFU_OA_APPID": "", "KEFU_OA_SECRET": "", "KEFU_OA_TOKEN": ""})
    r = httpx.get(no_oa.base_url + "/qrcode")
    assert r.status_code == 503 and "KEFU_OA_APPID" in r.json()["message"]
    r = httpx.get(callback_url(no_oa), params=signed_query("") | {"echostr": "x"})
    assert r.status_code == 503 and "KEFU_OA_TOKEN" in r.json()["message"]
    no_oa.stop()

    srv = deployment.server(**env)
    fake_wechat.set_verified(OA_APPID, False)  # an unverified account gets 48001
    r = httpx.get(srv.base_url + "/qrcode")
    assert r.status_code == 502 and r.json() == {"error": "wechat_error",
                                                 "message": "WeChat refused to create the QR code: "
                                                            "errcode 48001"}
    fake_wechat.set_verified(OA_APPID, True)
    qr = new_qr(srv)
    # The sandbox's helpers do not exist in real mode.
    assert httpx.post(srv.base_url + "/dev/simulate-scan", json={"ticket": qr["ticket"]}).status_code == 404
    assert httpx.get(srv.base_url + "/qr-image/" + quote(qr["ticket"], safe="")).status_code == 404
    # The callback's sandbox token is not accepted either.
    xml = build_scan_xml(to_user="gh_x", from_user="oa_x", scene=qr["uid"], ticket=qr["ticket"],
                         subscribe=False)
    sandbox = await fake_wechat.adeliver_event(callback_url(srv), "kefu-sandbox-callback-token", xml,
                                               attempts=1)
    assert sandbox.attempts[0].status == 403
