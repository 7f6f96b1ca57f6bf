"""The customer-service channel's pure parts: parsing message pushes (JSON and XML, plain and safe
mode), their dedupe keys, the reply-window rules, the subscribe message's data, and the client
calls the channel makes (against the fake WeChat on loopback)."""

from __future__ import annotations

import httpx
import pytest

from kefu.cs import window as rules
from kefu.cs.subscribe import template_data
from kefu.wechat import WeChatClient, WeChatCrypto
from kefu.wechat.errors import CallbackError, InvalidSignatureError, WeChatError
from kefu.wechat.mp_push import build_envelope, build_push, open_envelope, parse_push, push_fields
from tests.fake_wechat import MP_APPID, MP_ORIGINAL_ID, MP_SECRET, FakeWeChat
from tests.support.images import png

KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CRYPTO = WeChatCrypto("push-token", KEY, MP_APPID)


def fields(msg_type: str, **extra: str) -> dict:
    return push_fields(msg_type, to_user=MP_ORIGINAL_ID, from_user="o_mp_user", create_time=1714036504,
                       msg_id=None if msg_type == "event" else 24012345678901234, **extra)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_every_kind_of_push_parses_in_both_formats(fmt: str) -> None:
    text = parse_push(build_push(fields("text", Content="包裹破了 ]]> <b>"), fmt))
    assert (text.msg_type, text.content, text.from_user, text.create_time) == (
        "text", "包裹破了 ]]> <b>", "o_mp_user", 1714036504)
    assert text.msg_id == "24012345678901234" and text.dedupe_key == "msg:24012345678901234"
    image = parse_push(build_push(fields("image", PicUrl="http://mmbiz/x", MediaId="MEDIA_1"), fmt))
    assert (image.pic_url, image.media_id) == ("http://mmbiz/x", "MEDIA_1")
    card = parse_push(build_push(fields("miniprogrampage", Title="订单 42", AppId="wxabc",
                                        PagePath="pages/o?id=42", ThumbUrl="http://t",
                                        ThumbMediaId="THUMB_1"), fmt))
    assert (card.title, card.app_id, card.page_path, card.thumb_media_id) == (
        "订单 42", "wxabc", "pages/o?id=42", "THUMB_1")
    enter = parse_push(build_push(fields("event", Event="user_enter_tempsession", SessionFrom="order-42"),
                                  fmt))
    assert (enter.event, enter.session_from, enter.msg_id) == ("user_enter_tempsession", "order-42", None)
    assert enter.dedupe_key == "evt:o_mp_user:1714036504:user_enter_tempsession"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_safe_mode_envelopes(fmt: str) -> None:
    plain = build_push(fields("text", Content="加密的"), fmt)
    body, sig = build_envelope(plain, fmt, MP_ORIGINAL_ID, CRYPTO, "1714036504", "123456")
    assert b"Content" not in body and (body.startswith(b"{") == (fmt == "json"))
    assert parse_push(open_envelope(body, CRYPTO, sig, "1714036504", "123456")).content == "加密的"
    with pytest.raises(InvalidSignatureError):
        open_envelope(body, CRYPTO, sig, "1714036504", "654321")
    other_app = WeChatCrypto("push-token", KEY, "wxsomeoneelse000")
    body2, sig2 = build_envelope(plain, fmt, MP_ORIGINAL_ID, other_app, "1", "2")
    with pytest.raises(CallbackError):
        open_envelope(body2, CRYPTO, sig2, "1", "2")  # encrypted for another appid


@pytest.mark.parametrize("body", [b"", b"{}", b"[1]", b"{\"MsgType\": \"text\"}", b"<xml></xml>",
                                  b"<html/>", b"{\"ToUserName\": \"g\", \"FromUserName\": \"o\", "
                                  b"\"CreateTime\": \"soon\", \"MsgType\": \"text\", \"Content\": \"x\"}",
                                  b"<!DOCTYPE x [<!ENTITY a 'b'>]><xml>&a;</xml>", b"{" * 100])
def test_malformed_pushes_are_refused(body: bytes) -> None:
    with pytest.raises(CallbackError):
        parse_push(body)


def test_reply_windows() -> None:
    t = 1_000_000_000_000
    w = rules.after_message("o", t)
    assert w.is_open(t) and w.left(t) == 5 and w.expires_at == t + 48 * 3600 * 1000
    assert not w.is_open(w.expires_at) and w.left(w.expires_at) == 0
    assert w.may_type(t + 29_000) and not w.may_type(t + 31_000)
    short = rules.after_enter(None, "o", t)
    assert (short.quota, short.expires_at) == (2, t + 60_000)
    assert rules.after_enter(w, "o", t + 5000).expires_at == w.expires_at  # the long window stays
    spent = rules.Window("o", t, w.expires_at, 5, 4, t)
    assert rules.after_enter(spent, "o", t + 1).quota == 2  # only one left: the entry's two win
    assert rules.after_error(w, 45015, t + 10).expires_at == t + 10
    assert rules.after_error(w, 45047, t).left(t) == 0
    r = rules.reach(w, False, True, 1, t)
    assert r == {"connected": False, "wechat": {"until": w.expires_at, "left": 5},
                 "subscribe": {"template": True, "consents": 1}}
    assert rules.reach(None, True, False, 3, t)["subscribe"] == {"template": False, "consents": 0}


def test_subscribe_data_is_filled_and_cut() -> None:
    spec = '{"thing1": "{text}", "name2": "{agent}", "time3": "{time}", "thing4": "客服回复了您"}'
    data = template_data(spec, text="您好，\n您的包裹已经重新寄出，单号 SF1234567890，请注意查收",
                         agent="小王", now=1714036504)
    assert data["thing1"].endswith("…") and len(data["thing1"]) == 20 and "\n" not in data["thing1"]
    assert data["name2"] == "小王" and data["thing4"] == "客服回复了您"
    assert len(data["time3"]) == 16 and data["time3"][4] == "-"


async def test_the_channel_calls_against_the_fake() -> None:
    with FakeWeChat() as fw:
        async with httpx.AsyncClient() as http:
            c = WeChatClient(MP_APPID, MP_SECRET, api_base=fw.api_base, mp_base=fw.mp_base, http=http)
            media = fw.add_media(png(), "image/png")
            assert await c.get_temp_media(media) == png()
            with pytest.raises(WeChatError) as e:
                await c.get_temp_media("MEDIA_nope")
            assert e.value.errcode == 40007
            up = await c.upload_temp_image(png(), "image/png")
            assert fw.uploaded_media[0][0] == up and fw.uploaded_media[0][1] == png()
            fw.require_window = True
            with pytest.raises(WeChatError) as e:
                await c.send_custom_image("o_1", up)
            assert e.value.errcode == 45015
            with pytest.raises(WeChatError) as e:
                await c.set_typing("o_1", True)
            assert e.value.errcode == 45080  # no interaction in the last 30 s
            fw.open_window("o_1", messages=1)
            await c.set_typing("o_1", True)
            with pytest.raises(WeChatError) as e:
                await c.set_typing("o_1", True)
            assert e.value.errcode == 45081  # still typing
            await c.send_custom_image("o_1", up)
            assert fw.sent_messages[-1]["image"] == {"media_id": up}
            with pytest.raises(WeChatError) as e:
                await c.send_custom_text("o_1", "over")
            assert e.value.errcode == 45047
            with pytest.raises(WeChatError) as e:
                await c.send_subscribe("o_1", "TPL", "pages/chat/chat", {"thing1": "x"}, "formal")
            assert e.value.errcode == 43101
            fw.grant_subscribe("o_1", "TPL")
            await c.send_subscribe("o_1", "TPL", "pages/chat/chat", {"thing1": "x"}, "formal")
            sub = fw.sent_messages[-1]
            assert sub["data"] == {"thing1": {"value": "x"}} and sub["page"] == "pages/chat/chat"
            await c.aclose()
