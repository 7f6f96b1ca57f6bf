"""The dev-only `SandboxWeChat`: stable identities, QR tickets, and refusal in production."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
from urllib.parse import unquote

import pytest

import kefu.wechat.sandbox as sandbox_module
from kefu.wechat import (
    SANDBOX_DEV_ONLY,
    SandboxWeChat,
    WeChatClient,
    WeChatError,
    make_sandbox,
)
from kefu.wechat.sandbox import DEFAULT_SALT

OPENID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what kefu accepts as an openid


async def test_openid_is_stable_and_derived_from_code() -> None:
    a, b = SandboxWeChat(env="dev"), SandboxWeChat(env="dev")  # e.g. before/after a restart
    first = await a.code2session("alice")
    assert first == await a.code2session("alice") == await b.code2session("alice")
    expected = "sbx_" + hmac.new(DEFAULT_SALT, b"alice", hashlib.sha256).hexdigest()[:24]
    assert first.openid == expected and OPENID_RE.fullmatch(first.openid)
    assert first.unionid is None
    assert (await a.code2session("bob")).openid != first.openid


async def test_salt_changes_identities() -> None:
    salted = SandboxWeChat(secret_salt="other-salt", env="dev")
    plain = SandboxWeChat(env="dev")
    assert (await salted.code2session("alice")).openid != (await plain.code2session("alice")).openid


async def test_unionid_optional_and_stable() -> None:
    sb = SandboxWeChat(with_unionid=True, env="dev")
    s1, s2 = await sb.code2session("alice"), await sb.code2session("alice")
    assert s1.unionid == s2.unionid and s1.unionid is not None
    assert s1.unionid.startswith("sbxu_") and s1.unionid != s1.openid


@pytest.mark.parametrize("code", ["", "x" * 129])
async def test_bad_codes_are_40029(code: str) -> None:
    with pytest.raises(WeChatError) as e:
        await SandboxWeChat(env="dev").code2session(code)
    assert e.value.errcode == 40029


def test_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="KEFU_WECHAT_MODE=real"):
        make_sandbox("production")
    with pytest.raises(RuntimeError, match="dev-only"):
        SandboxWeChat(env="production")
    with pytest.raises(RuntimeError):
        make_sandbox(" Production ")
    monkeypatch.setenv("KEFU_ENV", "production")
    with pytest.raises(RuntimeError):
        SandboxWeChat()
    monkeypatch.setenv("KEFU_ENV", "dev")
    assert isinstance(SandboxWeChat(), SandboxWeChat)
    assert isinstance(make_sandbox("dev", image_base="/qr-image"), SandboxWeChat)


def test_marked_dev_only() -> None:
    assert SANDBOX_DEV_ONLY is True
    assert "DEV ONLY" in (SandboxWeChat.__doc__ or "")
    assert "DEVELOPMENT-ONLY" in (sandbox_module.__doc__ or "")
    assert "DEV ONLY" in repr(SandboxWeChat(env="dev"))


async def test_qrcode_tickets_and_image_urls() -> None:
    sb = SandboxWeChat(image_base="/qr-image/", env="dev")
    qr = await sb.create_temp_qrcode("login:abc", 300)
    other = await sb.create_temp_qrcode("login:def", 300)
    assert qr.ticket != other.ticket and qr.expire_seconds == 300 and qr.url
    assert all(ch in qr.ticket for ch in "+/=")
    url = sb.qrcode_image_url(qr.ticket)
    assert url is not None and url.startswith("/qr-image/")
    encoded = url.removeprefix("/qr-image/")
    assert not any(ch in encoded for ch in "+/=") and unquote(encoded) == qr.ticket
    assert SandboxWeChat(env="dev").qrcode_image_url(qr.ticket) is None
    assert sb.scene_for(qr.ticket) == "login:abc"
    assert sb.scene_for("unknown") is None


@pytest.mark.parametrize(("scene", "expire"), [("", 60), ("x" * 65, 60), ("ok", 0),
                                               ("ok", 2_592_001)])
async def test_qrcode_validation_matches_real_client(scene: str, expire: int) -> None:
    with pytest.raises(ValueError):
        await SandboxWeChat(env="dev").create_temp_qrcode(scene, expire)


async def test_simulate_scan_and_expiry() -> None:
    now = [100.0]
    sb = SandboxWeChat(env="dev", clock=lambda: now[0])
    qr = await sb.create_temp_qrcode("login:abc", 60)
    new = sb.simulate_scan(qr.ticket, "o_oa_1", subscribe=True)
    assert (new.event, new.event_key, new.scene, new.ticket) == (
        "subscribe", "qrscene_login:abc", "login:abc", qr.ticket)
    old = sb.simulate_scan(qr.ticket, "o_oa_1")
    assert (old.event, old.scene, old.from_user, old.to_user) == (
        "SCAN", "login:abc", "o_oa_1", sb.oa_id)
    now[0] += 61
    assert sb.scene_for(qr.ticket) is None
    with pytest.raises(LookupError):
        sb.simulate_scan(qr.ticket, "o_oa_1")
    await sb.create_temp_qrcode("next", 60)  # prunes expired tickets
    assert qr.ticket not in sb.qrcodes
    long = await sb.create_temp_qrcode("long", 600)
    short = await sb.create_temp_qrcode("short", 10)
    now[0] += 61
    await sb.create_temp_qrcode("later", 60)
    assert sb.scene_for(short.ticket) is None and sb.scene_for(long.ticket) == "long"
    now[0] += 600
    last = await sb.create_temp_qrcode("last", 60)
    assert list(sb.qrcodes) == [last.ticket], "every expired code is gone once the oldest is"


async def test_send_custom_text_is_recorded() -> None:
    sb = SandboxWeChat(env="dev")
    await sb.send_custom_text("sbx_1", "hello")
    assert list(sb.sent) == [("sbx_1", "hello")]
    await sb.aclose()


def test_same_async_surface_as_real_client() -> None:
    for name in ("code2session", "create_temp_qrcode", "send_custom_text", "aclose"):
        assert inspect.iscoroutinefunction(getattr(SandboxWeChat, name)), name
        assert inspect.iscoroutinefunction(getattr(WeChatClient, name)), name
        real = list(inspect.signature(getattr(WeChatClient, name)).parameters)
        fake = list(inspect.signature(getattr(SandboxWeChat, name)).parameters)
        assert real == fake, name
    assert not inspect.iscoroutinefunction(SandboxWeChat.qrcode_image_url)
