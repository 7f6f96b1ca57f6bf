"""Callback signature, event parsing, dedupe keys, and the fake's callback driver."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.wechat import (
    CallbackError,
    CallbackEvent,
    InvalidSignatureError,
    WeChatClient,
    WeChatCrypto,
    build_event_xml,
    build_scan_xml,
    check_signature,
    dedupe_key,
    parse_event,
    sha1_signature,
)
from kefu.wechat.callback import is_fresh
from tests.conftest import Deployment
from tests.fake_wechat import (
    OA_APPID,
    OA_ORIGINAL_ID,
    OA_SECRET,
    Delivery,
    FakeWeChat,
    adeliver_event,
    averify_url,
    deliver_event,
    signed_query,
)
from tests.support.qrflow import OA_TOKEN, callback_url, new_qr, open_page, real_env

TOKEN = "AAAAA"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"

SUBSCRIBE_XML = (
    b"<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName>"
    b"<FromUserName><![CDATA[OA_OPENID]]></FromUserName>\n<CreateTime>1714036504</CreateTime>"
    b"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>\n"
    b"<EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket></xml>")


# -- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(("ts", "nonce", "sig"), [
    ("1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
    ("1714037059", "486452656", "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
])
def test_check_signature_vectors(ts: str, nonce: str, sig: str) -> None:
    assert sha1_signature(TOKEN, ts, nonce) == sig
    assert check_signature(TOKEN, sig, ts, nonce)
    assert not check_signature("BBBBB", sig, ts, nonce)
    assert not check_signature(TOKEN, sig, ts, nonce + "1")
    assert not check_signature(TOKEN, sig[:-1] + "0", ts, nonce)


def test_check_signature_missing_parts_are_false() -> None:
    sig = "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert not check_signature(TOKEN, None, "1714036504", "1514711492")
    assert not check_signature(TOKEN, sig, None, "1514711492")
    assert not check_signature(TOKEN, sig, "1714036504", None)
    assert not check_signature("", sig, "1714036504", "1514711492")
    assert not check_signature(TOKEN, "ünïcode", "1", "2")


def test_signature_sorts_parts_without_separator() -> None:
    assert sha1_signature("b", "a", "c") == sha1_signature("c", "b", "a")
    assert sha1_signature("b", "a", "c") == hashlib.sha1(b"abc").hexdigest()


# -- parsing ----------------------------------------------------------------------------------


def test_parse_subscribe_with_qrscene() -> None:
    ev = parse_event(SUBSCRIBE_XML)
    assert ev == CallbackEvent(to_user="gh_123456789abc", from_user="OA_OPENID",
                               create_time=1714036504, msg_type="event", event="subscribe",
                               event_key="qrscene_123123", scene="123123", ticket="TICKET")
    assert ev.is_qr_scan and ev.msg_id is None


def test_parse_scan_bare_scene() -> None:
    xml = SUBSCRIBE_XML.replace(b"subscribe", b"SCAN").replace(b"qrscene_123123", b"login:abc")
    ev = parse_event(xml)
    assert (ev.event, ev.event_key, ev.scene, ev.ticket) == ("SCAN", "login:abc", "login:abc",
                                                             "TICKET")


def test_plain_follow_and_unfollow_have_no_scene() -> None:
    plain = build_event_xml(to_user="gh_x", from_user="o1", event="subscribe", create_time=5)
    assert parse_event(plain).scene is None and parse_event(plain).event_key is None
    empty_key = build_event_xml(to_user="gh_x", from_user="o1", event="subscribe", event_key="",
                                create_time=5)
    assert parse_event(empty_key).scene is None
    unsub = build_event_xml(to_user="gh_x", from_user="o1", event="unsubscribe", create_time=6)
    ev = parse_event(unsub)
    assert ev.event == "unsubscribe" and ev.scene is None and not ev.is_qr_scan
    # a subscribe whose key lacks the prefix (a menu or other key) is not a QR scan
    other = build_event_xml(to_user="gh_x", from_user="o1", event="subscribe", event_key="x")
    assert parse_event(other).scene is None


def test_parse_text_message_and_dedupe_by_msgid() -> None:
    xml = ("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[o1]]>"
           "</FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
           "<Content><![CDATA[你好]]></Content><MsgId>1234567890123456</MsgId></xml>")
    ev = parse_event(xml.encode())
    assert ev.msg_type == "text" and ev.event is None and ev.scene is None
    assert ev.msg_id == "1234567890123456" and ev.raw["Content"] == "你好"
    assert dedupe_key(ev) == "msg:1234567890123456"


def test_event_dedupe_key_is_sender_time_event() -> None:
    a = parse_event(SUBSCRIBE_XML)
    again = parse_event(SUBSCRIBE_XML)  # WeChat's re-delivery
    assert dedupe_key(a) == dedupe_key(again) == "evt:OA_OPENID:1714036504:subscribe"
    later = parse_event(SUBSCRIBE_XML.replace(b"1714036504", b"1714036505"))
    scan = parse_event(SUBSCRIBE_XML.replace(b"[subscribe]", b"[SCAN]"))
    assert len({dedupe_key(a), dedupe_key(later), dedupe_key(scan)}) == 3


def test_build_scan_xml_round_trips_and_escapes_cdata() -> None:
    for subscribe, event in ((True, "subscribe"), (False, "SCAN")):
        xml = build_scan_xml(to_user="gh_x", from_user="o]]>1", scene="s]]>x", ticket="T+/=",
                             subscribe=subscribe, create_time=42)
        ev = parse_event(xml)
        assert (ev.from_user, ev.scene, ev.ticket, ev.event, ev.create_time) == (
            "o]]>1", "s]]>x", "T+/=", event, 42)


@pytest.mark.parametrize("xml", [
    b"",
    b"not xml at all",
    b"<xml><ToUserName>gh</ToUserName>",  # truncated
    b"<notxml><ToUserName>a</ToUserName></notxml>",
    b"<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>event</MsgType></xml>",  # no ToUserName
    b"<xml><ToUserName>g</ToUserName><FromUserName>o</FromUserName>"
    b"<CreateTime>soon</CreateTime><MsgType>event</MsgType></xml>",
    b"<xml><ToUserName>g</ToUserName><FromUserName>o</FromUserName>"
    b"<CreateTime>1</CreateTime></xml>",  # no MsgType
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    b"<xml><ToUserName>&lol2;</ToUserName></xml>",  # entity expansion
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><ToUserName>&xxe;</ToUserName></xml>",  # external entity
    b"<xml><ToUserName>" + b"a" * 70_000 + b"</ToUserName></xml>",
])
def test_malformed_xml_rejected(xml: bytes) -> None:
    with pytest.raises(CallbackError):
        parse_event(xml)


# -- the fake's callback driver against a reference handler -----------------------------------


class CallbackServer:
    """What kefu's handler must do: verify, decrypt if needed, parse, answer quickly."""

    def __init__(self, token: str, *, crypto: WeChatCrypto | None = None,
                 replies: list[str] | None = None, delays: list[float] | None = None) -> None:
        self.token, self.crypto = token, crypto
        self.replies = list(replies or [])
        self.delays = list(delays or [])
        self.events: list[CallbackEvent] = []
        self.rejected = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                q = _query(self.path)
                ok = check_signature(outer.token, q.get("signature"), q.get("timestamp"),
                                     q.get("nonce"))
                self._reply(200 if ok else 403, q.get("echostr", "") if ok else "")

            def do_POST(self) -> None:
                q = _query(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.delays and (delay := outer.delays.pop(0)):
                    time.sleep(delay)
                if not check_signature(outer.token, q.get("signature"), q.get("timestamp"),
                                       q.get("nonce")):
                    outer.rejected += 1
                    return self._reply(403, "")
                if outer.crypto is not None:
                    assert q.get("encrypt_type") == "aes"
                    body = outer.crypto.decrypt_message(body, q.get("msg_signature"),
                                                        q["timestamp"], q["nonce"])
                outer.events.append(parse_event(body))
                self._reply(200, outer.replies.pop(0) if outer.replies else "success")

            def _reply(self, status: int, text: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(text.encode())))
                    self.end_headers()
                    self.wfile.write(text.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/wechat/callback"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _query(path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}


@pytest.fixture
def fw() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


async def test_driver_delivers_scan_of_a_real_ticket(fw: FakeWeChat) -> None:
    async with WeChatClient(OA_APPID, OA_SECRET, api_base=fw.api_base, mp_base=fw.mp_base) as oa:
        qr = await oa.create_temp_qrcode("login:xyz", 120)
    srv = CallbackServer(TOKEN)
    try:
        result = await fw.adeliver_event(srv.url, TOKEN, fw.scan_xml(qr.ticket, "o_oa_1"))
        assert result.accepted and result.count == 1 and result.reply is None
        result = await adeliver_event(srv.url, TOKEN,
                                      fw.scan_xml(qr.ticket, "o_oa_1", subscribe=False))
        assert result.accepted
    finally:
        srv.close()
    sub, scan = srv.events
    assert (sub.event, sub.scene, sub.ticket, sub.to_user) == ("subscribe", "login:xyz",
                                                               qr.ticket, OA_ORIGINAL_ID)
    assert (scan.event, scan.scene, scan.ticket) == ("SCAN", "login:xyz", qr.ticket)


async def test_driver_retries_until_success_then_stops() -> None:
    srv = CallbackServer(TOKEN, replies=["error", "<html>oops</html>", "success"])
    try:
        result = await adeliver_event(srv.url, TOKEN, SUBSCRIBE_XML)
    finally:
        srv.close()
    assert result.accepted and result.count == 3
    assert [a.body for a in result.attempts] == ["error", "<html>oops</html>", "success"]
    assert len({dedupe_key(e) for e in srv.events}) == 1  # same push three times


async def test_driver_gives_up_after_three_deliveries() -> None:
    srv = CallbackServer(TOKEN, replies=["nope"] * 5)
    try:
        result = await adeliver_event(srv.url, TOKEN, SUBSCRIBE_XML)
    finally:
        srv.close()
    assert not result.accepted and result.count == 3 and len(srv.events) == 3


async def test_driver_times_out_and_retries() -> None:
    srv = CallbackServer(TOKEN, delays=[0.6, 0.0])
    try:
        result = await adeliver_event(srv.url, TOKEN, SUBSCRIBE_XML, timeout=0.2)
    finally:
        srv.close()
    assert result.accepted and result.count == 2
    assert result.attempts[0].status is None and result.attempts[0].error == "timeout"


def test_driver_sync_wrong_token_is_rejected_and_empty_body_accepted() -> None:
    srv = CallbackServer(TOKEN, replies=[""])
    try:
        bad = deliver_event(srv.url, "wrong-token", SUBSCRIBE_XML)
        assert not bad.accepted and [a.status for a in bad.attempts] == [403, 403, 403]
        assert srv.rejected == 3
        good = deliver_event(srv.url, TOKEN, SUBSCRIBE_XML, timestamp="1714036504",
                             nonce="1514711492")
        assert good.accepted and good.attempts[0].body == ""
    finally:
        srv.close()


async def test_driver_safe_mode_and_encrypted_passive_reply() -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, OA_APPID)
    reply = "<xml><ToUserName><![CDATA[OA_OPENID]]></ToUserName><Content>hi</Content></xml>"
    srv = CallbackServer(TOKEN, crypto=crypto,
                         replies=[crypto.encrypt_message(reply, nonce="n1", timestamp=1)])
    try:
        result = await adeliver_event(srv.url, TOKEN, SUBSCRIBE_XML, crypto=crypto)
    finally:
        srv.close()
    assert result.accepted and result.reply == reply.encode()
    assert srv.events[0].scene == "123123"


async def test_verify_url_echoes() -> None:
    srv = CallbackServer(TOKEN)
    try:
        ok = await averify_url(srv.url, TOKEN, "echo-123")
        bad = await averify_url(srv.url, "other", "echo-123")
    finally:
        srv.close()
    assert (ok.status, ok.body) == (200, "echo-123")
    assert bad.status == 403


# -- kefu's own callback: freshness, replay, safe mode (a real server, both backends) ----------


def _refusal(delivery: Delivery) -> tuple[int | None, str | None]:
    """Status and `error` code of a delivery's only attempt."""
    (attempt,) = delivery.attempts
    code = json.loads(attempt.body).get("error") if attempt.status != 200 else None
    return attempt.status, code


async def test_stale_and_future_timestamps_are_refused(deployment, fw: FakeWeChat) -> None:
    srv = deployment.server(**real_env(fw, KEFU_CALLBACK_WINDOW="120"))
    url, now = callback_url(srv), int(time.time())
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    scan = fw.scan_xml(qr["ticket"], "oa_victim", subscribe=False)
    for ts in (now - 3600 * 24, now - 200, now + 200):  # a day-old logged query, skew both ways
        d = await adeliver_event(url, OA_TOKEN, scan, timestamp=str(ts), attempts=1)
        assert _refusal(d) == (403, "stale_timestamp")
    for ts in ("-5", "1e9", f" {now}", "１７１４０３６５０４", "9" * 40):  # not Unix seconds
        signed = {"timestamp": ts, "nonce": "1", "signature": sha1_signature(OA_TOKEN, ts, "1")}
        r = httpx.post(url, params=signed, content=scan)
        assert (r.status_code, r.json()["error"]) == (403, "stale_timestamp"), ts
    no_ts = {"nonce": "1", "signature": sha1_signature(OA_TOKEN, "", "1")}  # Sanic drops blank args
    assert httpx.post(url, params=no_ts | {"timestamp": ""}, content=scan).status_code == 403
    assert await page.nothing_for(0.5) == []
    # The URL check obeys the same window; inside it (either way) all is well.
    for ts, status in ((now - 100, 200), (now + 100, 200), (now - 1000, 403)):
        q = signed_query(OA_TOKEN, timestamp=str(ts)) | {"echostr": "e1"}
        assert httpx.get(url, params=q).status_code == status
    d = await adeliver_event(url, OA_TOKEN, scan, timestamp=str(now - 100), attempts=1)
    assert d.accepted
    assert (await page.recv())["uid"] == qr["uid"]


async def test_a_replayed_query_with_another_body_is_refused(deployment, fw: FakeWeChat) -> None:
    srv = deployment.server(**real_env(fw))
    url = callback_url(srv)
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    # WeChat pushes a harmless follow; its signed query ends up in some log.
    ts, nonce = str(int(time.time())), "2718281828"
    follow = build_event_xml(to_user=OA_ORIGINAL_ID, from_user="oa_someone", event="subscribe")
    assert (await adeliver_event(url, OA_TOKEN, follow, timestamp=ts, nonce=nonce, attempts=1)).accepted
    # Reusing that query for a forged scan of the victim's code does nothing.
    forged = fw.scan_xml(qr["ticket"], "oa_attacker", subscribe=False)
    d = await adeliver_event(url, OA_TOKEN, forged, timestamp=ts, nonce=nonce, attempts=1)
    assert _refusal(d) == (403, "replayed_nonce")
    r = httpx.get(url, params=signed_query(OA_TOKEN, timestamp=ts, nonce=nonce) | {"echostr": "x"})
    assert r.status_code == 403 and r.json()["error"] == "replayed_nonce"
    assert await page.nothing_for(0.5) == []
    # WeChat re-sending the very same request is not a replay: answered, and ignored as a duplicate.
    again = await adeliver_event(url, OA_TOKEN, follow, timestamp=ts, nonce=nonce, attempts=1)
    assert again.accepted and again.attempts[0].body == "success"
    # The genuine scan, with its own nonce, still logs in.
    genuine = fw.scan_xml(qr["ticket"], "oa_owner", subscribe=False)
    assert (await adeliver_event(url, OA_TOKEN, genuine, attempts=1)).accepted
    pushed = await page.recv()
    assert httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {pushed['token']}"}
                     ).json()["openid"] == "oa_owner"


async def test_nonces_are_shared_by_every_node(redis_deployment, fw: FakeWeChat) -> None:
    a = redis_deployment.server(**real_env(fw))
    b = redis_deployment.server(**real_env(fw))
    ts, nonce = str(int(time.time())), "1414213562"
    follow = build_event_xml(to_user=OA_ORIGINAL_ID, from_user="oa_someone", event="subscribe")
    assert (await adeliver_event(callback_url(a), OA_TOKEN, follow, timestamp=ts, nonce=nonce,
                                 attempts=1)).accepted
    qr = new_qr(b)
    page = await open_page(b, qr)
    forged = fw.scan_xml(qr["ticket"], "oa_attacker", subscribe=False)
    d = await adeliver_event(callback_url(b), OA_TOKEN, forged, timestamp=ts, nonce=nonce, attempts=1)
    assert _refusal(d) == (403, "replayed_nonce")
    assert await page.nothing_for(0.5) == []


async def test_with_an_aes_key_only_encrypted_callbacks_count(deployment, fw: FakeWeChat) -> None:
    srv = deployment.server(**real_env(fw, KEFU_OA_AES_KEY=AES_KEY))
    url = callback_url(srv)
    crypto = WeChatCrypto(OA_TOKEN, AES_KEY, OA_APPID)
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    plain = fw.scan_xml(qr["ticket"], "oa_attacker", subscribe=False)
    assert _refusal(await adeliver_event(url, OA_TOKEN, plain, attempts=1)) == (403, "encryption_required")
    # Safe-mode query, plain body: msg_signature covers nothing, so it cannot pass either.
    d = await adeliver_event(url, OA_TOKEN, plain, attempts=1,
                             extra_query={"encrypt_type": "aes", "msg_signature": "0" * 40})
    assert _refusal(d)[0] in (400, 403)
    assert await page.nothing_for(0.5) == []
    # The URL check (GET) stays plain, as in WeChat's safe mode.
    assert (await averify_url(url, OA_TOKEN, "echo-aes")).body == "echo-aes"
    real = fw.scan_xml(qr["ticket"], "oa_owner", subscribe=False)
    assert (await adeliver_event(url, OA_TOKEN, real, crypto=crypto, attempts=1)).accepted
    assert (await page.recv())["uid"] == qr["uid"]

    # The documented compatibility switch lets plain bodies in again (freshness and nonces still hold).
    srv.stop()
    compat = deployment.server(**real_env(fw, KEFU_OA_AES_KEY=AES_KEY, KEFU_OA_ALLOW_PLAIN="true"))
    qr2 = new_qr(compat)
    page2 = await open_page(compat, qr2)
    plain2 = fw.scan_xml(qr2["ticket"], "oa_plain", subscribe=False)
    assert (await adeliver_event(callback_url(compat), OA_TOKEN, plain2, attempts=1)).accepted
    assert (await page2.recv())["uid"] == qr2["uid"]


# -- property-based fuzzing of the callback parser ---------------------------------------------

# Text XML can carry (no control characters, surrogates or U+FFFE/U+FFFF; CR is normalised away).
_xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                                  exclude_characters="\ufffe\uffff"), max_size=80)


@given(st.one_of(st.binary(max_size=4096), st.text(max_size=2048)))
@settings(max_examples=400, deadline=None)
def test_fuzz_parse_event_raises_only_callback_error(body: bytes | str) -> None:
    try:
        ev = parse_event(body)
    except CallbackError:
        return
    assert isinstance(ev, CallbackEvent) and ev.to_user and ev.from_user and ev.msg_type


@given(to_user=_xml_text, from_user=_xml_text, scene=_xml_text, ticket=_xml_text,
       subscribe=st.booleans(), create_time=st.integers(0, 2**40))
@settings(max_examples=300, deadline=None)
def test_fuzz_scan_xml_round_trips(to_user: str, from_user: str, scene: str, ticket: str,
                                   subscribe: bool, create_time: int) -> None:
    """Whatever strings WeChat puts in a scan, the parser reads back what was sent (trimmed)."""
    xml = build_scan_xml(to_user=to_user, from_user=from_user, scene=scene, ticket=ticket,
                         subscribe=subscribe, create_time=create_time)
    if not (to_user.strip() and from_user.strip()):
        with pytest.raises(CallbackError):
            parse_event(xml)
        return
    ev = parse_event(xml)
    assert (ev.to_user, ev.from_user, ev.create_time) == (to_user.strip(), from_user.strip(), create_time)
    assert (ev.event, ev.ticket) == ("subscribe" if subscribe else "SCAN", ticket.strip() or None)
    assert ev.scene == ((scene.rstrip() if subscribe else scene.strip()) or None)


@given(st.one_of(st.binary(max_size=2048), st.text(max_size=1024)))
@settings(max_examples=300, deadline=None)
def test_fuzz_safe_mode_bodies_raise_only_callback_error(body: bytes | str) -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, OA_APPID)
    with contextlib.suppress(CallbackError):
        crypto.decrypt_message(body, "0" * 40, "1714036504", "1")


@given(st.binary(max_size=512))
@settings(max_examples=200, deadline=None)
def test_fuzz_encrypted_round_trip_and_tamper(message: bytes) -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, OA_APPID)
    encrypted = crypto.encrypt(message)
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    sig = crypto.signature("1714036504", "7", encrypted)
    assert crypto.decrypt_message(body, sig, "1714036504", "7") == message
    with pytest.raises(InvalidSignatureError):
        crypto.decrypt_message(body, sig, "1714036505", "7")


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=40), st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_fuzz_signature_and_freshness_checks_never_raise(sig: str, ts: str, nonce: str, token: str) -> None:
    ok = check_signature(token or TOKEN, sig, ts, nonce)
    assert ok == (sig == sha1_signature(token or TOKEN, ts, nonce))
    fresh = is_fresh(ts, time.time(), 300)
    assert fresh is False or (ts.isascii() and ts.isdigit())


def test_fuzz_callback_through_a_real_server(tmp_path, fw: FakeWeChat) -> None:
    """Signed, fresh requests with arbitrary bodies and query extras: a 200 or a 4xx, never a 500,
    and the server keeps serving."""
    d = Deployment("embedded", tmp_path, "fuzz-callback")
    try:
        srv = d.server(**real_env(fw))
        url = callback_url(srv)
        with httpx.Client(timeout=10) as http:

            @given(body=st.one_of(st.binary(max_size=1500), st.builds(
                       lambda ev, key, t: build_event_xml(to_user=OA_ORIGINAL_ID, from_user="oa_f",
                                                          event=ev, event_key=key, ticket=t),
                       st.sampled_from(["subscribe", "SCAN", "unsubscribe", "CLICK"]),
                       st.one_of(st.none(), _xml_text), st.one_of(st.none(), _xml_text))),
                   extra=st.dictionaries(st.sampled_from(["encrypt_type", "msg_signature", "openid"]),
                                         st.text(max_size=30), max_size=2))
            @settings(max_examples=60, deadline=None)
            def probe(body: bytes, extra: dict[str, str]) -> None:
                r = http.post(url, params=signed_query(OA_TOKEN) | extra, content=body)
                assert r.status_code in (200, 400, 403), (r.status_code, r.text)

            probe()
            assert http.get(srv.base_url + "/healthz").status_code == 200
        assert "Traceback" not in srv.log_tail(400)
    finally:
        d.close()
