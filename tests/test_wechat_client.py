"""`kefu.wechat.client` against the loopback fake WeChat."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import unquote

import httpx
import pytest

from kefu.wechat import (
    AccessTokenManager,
    CodeSession,
    WeChatClient,
    WeChatError,
    WeChatUnavailable,
)
from tests.fake_wechat import FAKE_JPEG, MP_APPID, MP_SECRET, OA_APPID, OA_SECRET, FakeWeChat

STABLE = "/cgi-bin/stable_token"
SEND = "/cgi-bin/message/custom/send"
QR = "/cgi-bin/qrcode/create"


@pytest.fixture
def fw() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
async def mp(fw: FakeWeChat) -> AsyncIterator[WeChatClient]:
    client = WeChatClient(MP_APPID, MP_SECRET, api_base=fw.api_base, mp_base=fw.mp_base)
    yield client
    await client.aclose()


@pytest.fixture
async def oa(fw: FakeWeChat) -> AsyncIterator[WeChatClient]:
    client = WeChatClient(OA_APPID, OA_SECRET, api_base=fw.api_base, mp_base=fw.mp_base)
    yield client
    await client.aclose()


# -- code2session -----------------------------------------------------------------------------


async def test_code2session_returns_openid_and_sends_exact_query(fw: FakeWeChat,
                                                                 mp: WeChatClient) -> None:
    fw.register_code("code-1", "o_mp_user1")
    assert await mp.code2session("code-1") == CodeSession("o_mp_user1", None)
    (req,) = fw.requests_to("/sns/jscode2session")
    assert req.method == "GET" and req.body == b""
    assert req.query == {"appid": MP_APPID, "secret": MP_SECRET, "js_code": "code-1",
                         "grant_type": "authorization_code"}


async def test_code2session_unionid_only_when_bound(fw: FakeWeChat, mp: WeChatClient) -> None:
    fw.register_code("bound", "o_a", unionid="u_person")
    session = await mp.code2session("bound")
    assert session.unionid == "u_person"
    assert not hasattr(session, "session_key")  # never leaves the client
    assert "session_key" not in repr(session)


async def test_code2session_reused_code_is_40029(fw: FakeWeChat, mp: WeChatClient) -> None:
    fw.register_code("once", "o_a")
    await mp.code2session("once")
    with pytest.raises(WeChatError) as e:
        await mp.code2session("once")
    assert e.value.errcode == 40029


async def test_code2session_unknown_or_expired_or_foreign_code_is_40029(
        fw: FakeWeChat, mp: WeChatClient) -> None:
    fw.register_code("old", "o_a", ttl=-1)
    fw.register_code("for-oa", "o_b", appid=OA_APPID)
    for code in ("never-issued", "old", "for-oa"):
        with pytest.raises(WeChatError) as e:
            await mp.code2session(code)
        assert e.value.errcode == 40029, code


async def test_code2session_wrong_appid_and_empty_code(fw: FakeWeChat) -> None:
    async with WeChatClient("wx_unknown", "x", api_base=fw.api_base) as client:
        with pytest.raises(WeChatError) as e:
            await client.code2session("c")
        assert e.value.errcode == 40013
        with pytest.raises(ValueError):
            await client.code2session("")


async def test_busy_is_reported_not_retried(fw: FakeWeChat, mp: WeChatClient) -> None:
    fw.register_code("c", "o_a")
    fw.busy_next(path="/sns/jscode2session")
    with pytest.raises(WeChatError) as e:
        await mp.code2session("c")
    assert e.value.errcode == -1 and e.value.busy
    assert "rid:" in e.value.errmsg  # errmsg passed through; only errcode is compared
    assert len(fw.requests_to("/sns/jscode2session")) == 1
    assert (await mp.code2session("c")).openid == "o_a"


# -- access token -----------------------------------------------------------------------------


async def test_token_from_stable_token_json_body_and_cached(fw: FakeWeChat,
                                                             oa: WeChatClient) -> None:
    await oa.send_custom_text("o_x", "one")
    await oa.send_custom_text("o_x", "two")
    assert fw.token_fetches == 1
    (req,) = fw.requests_to(STABLE)
    assert req.method == "POST" and req.query == {}
    assert req.json() == {"grant_type": "client_credential", "appid": OA_APPID,
                          "secret": OA_SECRET, "force_refresh": False}
    tokens = {r.query["access_token"] for r in fw.requests_to(SEND)}
    assert len(tokens) == 1


async def test_concurrent_callers_trigger_exactly_one_fetch(fw: FakeWeChat,
                                                            oa: WeChatClient) -> None:
    fw.set_delay(STABLE, 0.3)
    await asyncio.gather(*(oa.send_custom_text(f"o_{i}", "hi") for i in range(20)))
    assert fw.token_fetches == 1
    assert len(fw.sent_messages) == 20


async def test_concurrent_failed_fetch_fails_all_waiters_with_one_request(fw: FakeWeChat) -> None:
    fw.set_delay(STABLE, 0.2)
    async with WeChatClient("wx_unknown", "x", api_base=fw.api_base) as client:
        results = await asyncio.gather(*(client.send_custom_text("o", "x") for _ in range(5)),
                                       return_exceptions=True)
    assert all(isinstance(r, WeChatError) and r.errcode == 40013 for r in results)
    assert fw.token_fetches == 1


async def test_cancelled_caller_does_not_cancel_shared_fetch(fw: FakeWeChat,
                                                             oa: WeChatClient) -> None:
    fw.set_delay(STABLE, 0.3)
    first = asyncio.create_task(oa.tokens.get())
    second = asyncio.create_task(oa.tokens.get())
    await asyncio.sleep(0.05)
    first.cancel()
    assert (await second).startswith("FAKE_")
    assert first.cancelled()
    assert fw.token_fetches == 1


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
async def test_stale_token_errcodes_refresh_and_retry_once(fw: FakeWeChat, oa: WeChatClient,
                                                           errcode: int) -> None:
    await oa.send_custom_text("o_x", "warm up")
    fw.fail_next(errcode, path=SEND)
    await oa.send_custom_text("o_x", "after refresh")
    assert fw.token_fetches == 2
    assert len(fw.requests_to(SEND)) == 3
    assert [m["text"]["content"] for m in fw.sent_messages] == ["warm up", "after refresh"]


async def test_expired_token_42001_then_success(fw: FakeWeChat, oa: WeChatClient) -> None:
    fw.expire_next_token(OA_APPID)
    await oa.send_custom_text("o_x", "hello")
    first, second = fw.requests_to(SEND)
    assert first.query["access_token"] != second.query["access_token"]
    assert fw.token_fetches == 2 and len(fw.sent_messages) == 1


async def test_retry_happens_only_once(fw: FakeWeChat, oa: WeChatClient) -> None:
    fw.fail_next(42001, path=SEND, times=2)
    with pytest.raises(WeChatError) as e:
        await oa.send_custom_text("o_x", "hello")
    assert e.value.errcode == 42001
    assert len(fw.requests_to(SEND)) == 2


async def test_concurrent_callers_with_stale_token_share_one_refresh(fw: FakeWeChat,
                                                                     oa: WeChatClient) -> None:
    await oa.send_custom_text("o_x", "warm up")
    fw.expire_tokens()
    fw.set_delay(STABLE, 0.2)
    await asyncio.gather(*(oa.send_custom_text(f"o_{i}", "x") for i in range(10)))
    assert fw.token_fetches == 2
    assert len(fw.sent_messages) == 11


async def test_token_refreshed_60s_before_expiry(fw: FakeWeChat) -> None:
    now = [1000.0]
    async with httpx.AsyncClient() as http:
        mgr = AccessTokenManager(http, fw.api_base, OA_APPID, OA_SECRET, clock=lambda: now[0])
        token = await mgr.get()
        now[0] += 7200 - 61
        assert await mgr.get() == token and fw.token_fetches == 1
        now[0] += 2  # 59 s left: refresh ahead of expiry
        await mgr.get()
        assert fw.token_fetches == 2
        mgr.invalidate("some-older-token")  # not the cached one: no effect
        await mgr.get()
        assert fw.token_fetches == 2
        mgr.invalidate()
        await mgr.get()
        assert fw.token_fetches == 3


async def test_each_app_has_its_own_token(fw: FakeWeChat, mp: WeChatClient,
                                          oa: WeChatClient) -> None:
    await mp.send_custom_text("o_mp", "a")
    await oa.send_custom_text("o_oa", "b")
    assert [m["appid"] for m in fw.sent_messages] == [MP_APPID, OA_APPID]
    assert fw.token_fetches == 2


# -- QR codes ---------------------------------------------------------------------------------


async def test_create_temp_qrcode_request_shape_and_result(fw: FakeWeChat,
                                                           oa: WeChatClient) -> None:
    qr = await oa.create_temp_qrcode("login:abc123", 300)
    (req,) = fw.requests_to(QR)
    assert req.json() == {"expire_seconds": 300, "action_name": "QR_STR_SCENE",
                          "action_info": {"scene": {"scene_str": "login:abc123"}}}
    assert req.query["access_token"].startswith("FAKE_")
    (created,) = fw.created_qrcodes
    assert (qr.ticket, qr.expire_seconds, qr.url) == (created.ticket, 300, created.url)
    assert created.scene == "login:abc123" and created.appid == OA_APPID
    assert all(ch in qr.ticket for ch in "+/=")


async def test_qrcode_image_url_encodes_ticket_and_serves_image(fw: FakeWeChat,
                                                                oa: WeChatClient) -> None:
    qr = await oa.create_temp_qrcode("s1", 60)
    url = oa.qrcode_image_url(qr.ticket)
    assert url.startswith(fw.mp_base + "/cgi-bin/showqrcode?ticket=")
    encoded = url.split("ticket=", 1)[1]
    assert not any(ch in encoded for ch in "+/=") and unquote(encoded) == qr.ticket
    async with httpx.AsyncClient() as http:
        resp = await http.get(url)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/jpeg" and resp.content == FAKE_JPEG
        naive = await http.get(f"{fw.mp_base}/cgi-bin/showqrcode?ticket={qr.ticket}")
        assert naive.status_code == 404  # an un-encoded `+` arrives as a space
        assert (await http.get(oa.qrcode_image_url("nope+/=="))).status_code == 404


def test_qrcode_image_url_uses_mp_base() -> None:
    client = WeChatClient("a", "b")
    assert client.qrcode_image_url("gQ+a/b==") == (
        "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQ%2Ba%2Fb%3D%3D")


@pytest.mark.parametrize(("scene", "expire"), [("", 60), ("x" * 65, 60), ("ok", 0),
                                               ("ok", 2_592_001), ("ok", True), ("ok", 1.5)])
async def test_create_temp_qrcode_rejects_bad_args_locally(fw: FakeWeChat, oa: WeChatClient,
                                                           scene: str, expire: int) -> None:
    with pytest.raises(ValueError):
        await oa.create_temp_qrcode(scene, expire)
    assert fw.requests == []


async def test_create_temp_qrcode_max_lifetime_accepted(fw: FakeWeChat, oa: WeChatClient) -> None:
    qr = await oa.create_temp_qrcode("x" * 64, 2_592_000)
    assert qr.expire_seconds == 2_592_000


async def test_unverified_account_gets_48001(fw: FakeWeChat, oa: WeChatClient) -> None:
    fw.set_verified(OA_APPID, False)
    with pytest.raises(WeChatError) as e:
        await oa.create_temp_qrcode("s", 60)
    assert e.value.errcode == 48001
    assert len(fw.requests_to(QR)) == 1  # not a token error: no retry


# -- custom messages --------------------------------------------------------------------------


async def test_send_custom_text_body_is_raw_utf8(fw: FakeWeChat, oa: WeChatClient) -> None:
    await oa.send_custom_text("o_x", "您好 👋")
    (req,) = fw.requests_to(SEND)
    assert "您好 👋".encode() in req.body
    assert req.json() == {"touser": "o_x", "msgtype": "text", "text": {"content": "您好 👋"}}


async def test_send_custom_text_window_errors(fw: FakeWeChat, oa: WeChatClient) -> None:
    fw.require_window = True
    with pytest.raises(WeChatError) as e:
        await oa.send_custom_text("o_x", "no window")
    assert e.value.errcode == 45015
    fw.open_window("o_x", messages=1)
    await oa.send_custom_text("o_x", "ok")
    with pytest.raises(WeChatError) as e:
        await oa.send_custom_text("o_x", "over quota")
    assert e.value.errcode == 45047


# -- transport failures -----------------------------------------------------------------------


async def test_timeout_is_unavailable(fw: FakeWeChat) -> None:
    fw.register_code("c", "o_a")
    fw.set_delay("/sns/jscode2session", 1.0)
    async with WeChatClient(MP_APPID, MP_SECRET, api_base=fw.api_base, timeout=0.2) as client:
        with pytest.raises(WeChatUnavailable) as e:
            await client.code2session("c")
    assert MP_SECRET not in str(e.value)


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with WeChatClient(OA_APPID, OA_SECRET, api_base=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(WeChatUnavailable) as e:
            await client.send_custom_text("o", "x")
    assert OA_SECRET not in str(e.value)


async def test_non_json_and_http_errors_are_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/sns/jscode2session":
            return httpx.Response(200, text="<html>gateway</html>")
        return httpx.Response(502, json={"errcode": 0})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = WeChatClient("a", "b", api_base="http://wx.test", http=http)
        with pytest.raises(WeChatUnavailable):
            await client.code2session("c")
        with pytest.raises(WeChatUnavailable):
            await client.send_custom_text("o", "x")
        await client.aclose()
        assert not http.is_closed  # a shared client belongs to the caller


async def test_errcode_zero_and_string_errcode() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/stable_token":
            return httpx.Response(200, json={"access_token": "T", "expires_in": 7200})
        if request.url.path == "/sns/jscode2session":
            return httpx.Response(200, json={"errcode": "0", "openid": "o1", "session_key": "k"})
        return httpx.Response(200, json={"errcode": "45009", "errmsg": "reach max api daily quota"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = WeChatClient("a", "b", api_base="http://wx.test", http=http)
        assert (await client.code2session("c")).openid == "o1"
        with pytest.raises(WeChatError) as e:
            await client.send_custom_text("o", "x")
        assert e.value.errcode == 45009
