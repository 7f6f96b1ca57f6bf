"""WeChat's customer-service channel end to end: kefu in real mode against the fake WeChat on
loopback, which pushes what users write in WeChat's own chat (JSON and XML, plain and safe mode,
with retries), serves their pictures as temporary media, and enforces the reply window, the quota
and subscribe consent (45015, 45047, 43101) as WeChat does."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from kefu.wechat import WeChatCrypto
from tests.fake_wechat import MP_APPID, FakeWeChat
from tests.support import images
from tests.support.qrflow import real_env
from tests.support.wsclient import WsClient

MP_TOKEN = "mp-push-token-for-tests"
MP_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
TEMPLATE = "TPL_reply_received_0001"
CRYPTO = WeChatCrypto(MP_TOKEN, MP_AES_KEY, MP_APPID)


def channel_env(fw: FakeWeChat, **extra: str) -> dict[str, str]:
    return real_env(fw, KEFU_MP_TOKEN=MP_TOKEN, KEFU_MP_AES_KEY=MP_AES_KEY, KEFU_MP_ALLOW_PLAIN="true",
                    KEFU_SUBSCRIBE_TEMPLATE_ID=TEMPLATE, KEFU_TYPING_INTERVAL="0.2", **extra)


def login(srv, fw: FakeWeChat, code: str, openid: str) -> str:  # type: ignore[no-untyped-def]
    fw.register_code(code, openid)
    r = httpx.post(srv.base_url + "/api/login", json={"code": code})
    assert r.status_code == 200, r.text
    assert r.json()["openid"] == openid
    return str(r.json()["token"])


async def desk(srv, name: str) -> WsClient:  # type: ignore[no-untyped-def]
    ws = await WsClient.connect(srv.ws_url, await asyncio.to_thread(srv.agent_token, name))
    await ws.send({"cmd": "desk"})
    await ws.recv_until(lambda f: f.get("cmd") == "desk")
    return ws


def delivery(ws: WsClient, message_id: int):  # type: ignore[no-untyped-def]
    return ws.recv_until(lambda f: f.get("kind") == "event" and f["meta"].get("event") == "delivery"
                         and f["meta"]["message_id"] == message_id, timeout=8)


async def reply(ws: WsClient, openid: str, text: str, cmid: str) -> dict[str, Any]:
    await ws.send({"type": 1, "openid": openid, "msg": text, "cmid": cmid})
    return await ws.recv_until(lambda f: f.get("cmd") == "ack" and f["cmid"] == cmid)


def reach(srv, token: str, openid: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{srv.base_url}/api/wechat/reach/{openid}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_contact_button_conversation(deployment):  # type: ignore[no-untyped-def]
    with FakeWeChat(require_window=True) as fw:
        srv = deployment.server(**channel_env(fw))
        srv.create_agent("alice")
        agent_token = srv.agent_token("alice")
        alice = await desk(srv, "alice")
        url = srv.base_url + "/wechat/mp"
        user_token = login(srv, fw, "code-1", "o_contact_1")
        openid = "o_contact_1"  # the mini-program openid: one customer for the socket and WeChat

        # Text, JSON, plain; WeChat delivers it three times: one message.
        d, push = await fw.apush(url, MP_TOKEN, openid, "text", fmt="json", Content="包裹破了", repeat=2)
        assert d.accepted and d.count == 3 and [a.body for a in d.attempts] == ["success"] * 3
        got = await alice.recv_until(lambda f: f.get("msg") == "包裹破了")
        assert got["from"] == "user" and got["openid"] == openid and got["meta"] == {"via": "wechat"}
        assert got["cmid"] == f"wx:{push['MsgId']}"
        assert [f for f in await alice.nothing_for(0.6) if f.get("msg") == "包裹破了"] == []

        # A picture, XML in safe mode: fetched as temporary media, stored like an upload.
        media_id = fw.add_media(images.photo_with_gps())
        d, _ = await fw.apush(url, MP_TOKEN, openid, "image", fmt="xml", crypto=CRYPTO,
                              PicUrl="http://mmbiz.qpic.cn/fake", MediaId=media_id, repeat=1)
        assert d.accepted
        pic = await alice.recv_until(lambda f: f.get("kind") == "image", timeout=8)
        assert pic["meta"]["via"] == "wechat" and pic["msg"] == "[图片]"
        image_id = pic["meta"]["image"]["id"]
        signed = httpx.post(srv.base_url + "/api/media/sign", json={"ids": [image_id]},
                            headers={"Authorization": f"Bearer {agent_token}"}).json()["images"][image_id]
        assert images.gps_of(httpx.get(srv.base_url + signed["url"]).content) == {}
        # A mini-program card, JSON in safe mode, and the user entering the chat (an event).
        thumb = fw.add_media(images.png())
        d, _ = await fw.apush(url, MP_TOKEN, openid, "miniprogrampage", fmt="json", crypto=CRYPTO,
                              Title="订单 #42", AppId="wxshop", PagePath="pages/order?id=42",
                              ThumbUrl="http://t", ThumbMediaId=thumb)
        card = await alice.recv_until(lambda f: f.get("kind") == "card", timeout=8)
        assert card["meta"]["card"]["title"] == "订单 #42" and card["meta"]["card"]["image"]["id"]
        d, _ = await fw.apush(url, MP_TOKEN, openid, "event", fmt="xml", Event="user_enter_tempsession",
                              SessionFrom="order-42", repeat=1)
        entered = await alice.recv_until(lambda f: f.get("kind") == "event"
                                         and f["meta"]["event"] == "wechat_enter")
        assert entered["meta"]["session_from"] == "order-42"
        assert not [f for f in await alice.nothing_for(0.5) if f.get("kind") == "event"
                    and f["meta"].get("event") == "wechat_enter"]
        # One conversation: the in-app history has the WeChat messages too.
        hist = httpx.get(f"{srv.base_url}/api/conversations/{openid}/messages",
                         headers={"Authorization": f"Bearer {user_token}"}).json()["messages"]
        assert [m.get("kind", "text") for m in hist][::-1] == ["text", "image", "card"]
        r = reach(srv, agent_token, openid)
        assert r["connected"] is False and r["wechat"]["left"] == 5
        assert r["subscribe"] == {"template": True, "consents": 0}

        # Typing goes to WeChat while the user is not connected (and was active in the last 30 s).
        await alice.send({"cmd": "typing", "openid": openid})
        for _ in range(50):
            if fw.typing:
                break
            await asyncio.sleep(0.05)
        assert fw.typing == [{"touser": openid, "command": "Typing"}]

        # Replies: by customer-service message (text; a picture as uploaded temporary media).
        ack = await reply(alice, openid, "请拍一张照片", "r1")
        assert ack["delivered"] is False
        sent = (await delivery(alice, ack["id"]))["meta"]
        assert sent == {"event": "delivery", "message_id": ack["id"], "via": "wechat", "status": "sent"}
        assert fw.sent_messages[-1] == {"appid": MP_APPID, "touser": openid, "msgtype": "text",
                                        "text": {"content": "请拍一张照片"}}
        up = httpx.post(srv.base_url + "/api/media", params={"openid": openid}, content=images.png(),
                        headers={"Authorization": f"Bearer {agent_token}", "Content-Type": "image/png"})
        await alice.send({"type": 1, "openid": openid, "image": up.json()["image"]["id"], "cmid": "r2"})
        ack2 = await alice.recv_until(lambda f: f.get("cmd") == "ack" and f["cmid"] == "r2")
        assert (await delivery(alice, ack2["id"]))["meta"]["status"] == "sent"
        media_sent = fw.sent_messages[-1]
        assert media_sent["msgtype"] == "image"
        assert media_sent["image"]["media_id"] == fw.uploaded_media[-1][0]
        assert fw.uploaded_media[-1][2] == "image/jpeg"  # the stored (clean) picture

        # WeChat says the quota is used (45047): the reply is marked with the reason.
        fw.open_window(openid, messages=0)
        ack3 = await reply(alice, openid, "还有一件事", "r3")
        failed = (await delivery(alice, ack3["id"]))["meta"]
        assert (failed["status"], failed["reason"], failed["errcode"]) == ("failed", "quota", 45047)
        assert reach(srv, agent_token, openid)["wechat"] is None

        # The user allowed one "reply received" subscribe message: the next reply sends it, once.
        r = httpx.post(srv.base_url + "/api/me/subscribe", json={"template_id": TEMPLATE, "result": "accept"},
                       headers={"Authorization": f"Bearer {user_token}"})
        assert r.status_code == 200 and r.json()["consents"] == 1
        fw.grant_subscribe(openid, TEMPLATE)
        ack4 = await reply(alice, openid, "已为您补发", "r4")
        sub = (await delivery(alice, ack4["id"]))["meta"]
        assert (sub["via"], sub["status"], sub["wechat_reason"]) == ("subscribe", "sent", "quota")
        sent_sub = fw.sent_messages[-1]
        assert sent_sub["msgtype"] == "subscribe" and sent_sub["template_id"] == TEMPLATE
        assert sent_sub["page"] == "pages/chat/chat" and sent_sub["data"]["thing1"] == {"value": "已为您补发"}
        ack5 = await reply(alice, openid, "再补一句", "r5")
        none_left = (await delivery(alice, ack5["id"]))["meta"]
        assert (none_left["via"], none_left["status"], none_left["reason"]) == ("wechat", "failed", "quota")
        assert sum(m["msgtype"] == "subscribe" for m in fw.sent_messages) == 1
        # kefu thought there was a consent but WeChat says none (43101): marked, and forgotten.
        httpx.post(srv.base_url + "/api/me/subscribe", json={"template_id": TEMPLATE, "result": "accept"},
                   headers={"Authorization": f"Bearer {user_token}"})
        ack6 = await reply(alice, openid, "第三句", "r6")
        refused = (await delivery(alice, ack6["id"]))["meta"]
        assert (refused["via"], refused["errcode"], refused["reason"]) == ("subscribe", 43101, "no_consent")
        assert reach(srv, agent_token, openid)["subscribe"]["consents"] == 0

        # Another user whose window WeChat closed early (45015).
        other = "o_contact_2"
        await fw.apush(url, MP_TOKEN, other, "text", fmt="xml", Content="在吗")
        await alice.recv_until(lambda f: f.get("msg") == "在吗")
        fw.close_window(other)
        ack7 = await reply(alice, other, "在的", "r7")
        late = (await delivery(alice, ack7["id"]))["meta"]
        assert (late["status"], late["reason"], late["errcode"]) == ("failed", "out_of_window", 45015)

        # Connected in the app: the socket gets the reply and WeChat is not called.
        user = await WsClient.connect(srv.ws_url, user_token)
        before = len(fw.sent_messages)
        ack8 = await reply(alice, openid, "看到了吗", "r8")
        assert ack8["delivered"] is True
        assert (await user.recv_until(lambda f: f.get("msg") == "看到了吗"))["from"] == "agent"
        await asyncio.sleep(0.5)
        assert len(fw.sent_messages) == before and reach(srv, agent_token, openid)["connected"] is True
        # A push that is not signed with the token is refused (the same checks as the OA callback).
        bad = await fw.apush(url, "wrong-token", openid, "text", Content="x", attempts=1)
        assert bad[0].attempts[0].status == 403
        await alice.close()
        await user.close()


async def test_nodes_share_one_access_token(redis_deployment):  # type: ignore[no-untyped-def]
    with FakeWeChat() as fw:
        a = redis_deployment.server(**channel_env(fw))
        b = redis_deployment.server(**channel_env(fw))
        a.create_agent("bob")
        bob_a = await desk(a, "bob")
        bob_b = await desk(b, "bob")
        fetches = fw.token_fetches  # logins use code2session, which needs no token
        for i, (srv, ws) in enumerate(((a, bob_a), (b, bob_b), (a, bob_a), (b, bob_b))):
            openid = f"o_shared_{i}"
            await fw.apush(srv.base_url + "/wechat/mp", MP_TOKEN, openid, "text", Content=f"hi {i}")
            await ws.recv_until(lambda f, i=i: f.get("msg") == f"hi {i}")
            ack = await reply(ws, openid, f"reply {i}", f"s{i}")
            assert (await delivery(ws, ack["id"]))["meta"]["status"] == "sent"
        assert fw.token_fetches - fetches == 1  # one stable_token call for both processes
        # WeChat calls the token stale: one node refreshes it, the other takes the new one.
        fw.expire_tokens(MP_APPID)
        for i, (srv, ws) in enumerate(((b, bob_b), (a, bob_a))):
            openid = f"o_shared_{i}"
            await fw.apush(srv.base_url + "/wechat/mp", MP_TOKEN, openid, "text", Content=f"again {i}")
            ack = await reply(ws, openid, f"reply again {i}", f"t{i}")
            assert (await delivery(ws, ack["id"]))["meta"]["status"] == "sent"
        assert fw.token_fetches - fetches == 2
        await bob_a.close()
        await bob_b.close()
