"""The pure parts of pushes to any page, without a server: page frames, bind tokens, the page
session's fan-out, the push vocabulary; and the group store against a real Redis."""

from __future__ import annotations

import time
import warnings

import jwt
import pytest

from kefu.core.page import Bind, Ignored, PageSession, SeedBind, TokenBind, parse_page_frame
from kefu.core.push import MAX_GROUPS, PAGES, PushError, group_channel, page_push_envelope, uid_channel
from kefu.core.routing import Envelope
from kefu.core.session import Limits, Send
from kefu.errors import BadFrame, BadJson, KefuError
from kefu.protocol import Ping
from kefu.push import tokens
from kefu.push.commands import Count, GroupChange, Online, parse_command
from kefu.push.groups import MemoryGroups, RedisGroups
from tests.support import services
from tests.support.pushpages import BIND_SECRET, OTHER_SECRET, tampered, unsigned

LIMITS = Limits(max_message_bytes=100, heartbeat_timeout=40, rate_per_sec=10, rate_burst=30, error_strikes=5)


def test_page_frames():
    assert parse_page_frame('{"cmd":"bind","token":"a.b.c"}') == TokenBind("a.b.c")
    assert parse_page_frame('{"type":"init","task_id":"task 123456"}') == SeedBind("task 123456", "task_id")
    assert parse_page_frame('{"type":"init","task_id":7}') == SeedBind("7", "task_id")
    assert isinstance(parse_page_frame('{"type":"ping"}'), Ping)
    assert isinstance(parse_page_frame('{"uid":"u","ticket":"t"}'), Bind)
    # Bare text: a uid on /ws/push (ignored once bound); never on /ws/qr.
    assert parse_page_frame("123", bare_text=True) == SeedBind("123", "uid")
    assert isinstance(parse_page_frame("ping", bare_text=True, bound=True), Ignored)
    with pytest.raises(BadJson):
        parse_page_frame("123")
    with pytest.raises(BadJson):
        parse_page_frame("{broken", bare_text=True)
    for bad in ("not a uid!", "x" * 65):
        with pytest.raises(BadFrame):
            parse_page_frame(bad, bare_text=True)
    for bad in ('{"cmd":"bind"}', '{"cmd":"bind","token":5}', '{"type":"init"}',
                '{"type":"init","task_id":"a\\nb"}', '{"type":"init","task_id":""}', '{"type":"other"}'):
        with pytest.raises(BadFrame):
            parse_page_frame(bad)


def test_bind_tokens_are_checked_for_signature_then_expiry_and_audience():
    good = tokens.mint("42", BIND_SECRET, groups=["news", "news", "上新"])
    claims = tokens.verify(good, BIND_SECRET, "kefu")
    assert (claims.uid, claims.groups) == ("42", ("news", "上新"))
    assert claims.expires_at > time.time()

    def code(tok: str, secret: str = BIND_SECRET, audience: str = "kefu") -> str:
        with pytest.raises(KefuError) as e:
            tokens.verify(tok, secret, audience)
        return e.value.code

    assert code(tokens.mint("42", BIND_SECRET, ttl=-1)) == "token_expired"
    assert code(good, audience="other") == "wrong_audience"
    assert code(tampered(good, sub="1")) == "bad_token"
    assert code(good, secret=OTHER_SECRET) == "bad_token"
    assert code(unsigned("42")) == "bad_token"
    # An expired token signed by someone else is not "expired": its signature fails first.
    assert code(tokens.mint("42", OTHER_SECRET, ttl=-1)) == "bad_token"
    now = int(time.time())
    missing_aud = jwt.encode({"sub": "42", "exp": now + 60}, BIND_SECRET, algorithm="HS256")
    assert code(missing_aud) == "wrong_audience"
    missing_exp = jwt.encode({"sub": "42", "aud": "kefu"}, BIND_SECRET, algorithm="HS256")
    assert code(missing_exp) == "bad_token"
    for claims_ in ({"sub": "not ok!"}, {"groups": "news"}, {"groups": ["x"] * (MAX_GROUPS + 1)},
                    {"groups": [""]}, {"sub": 42}):
        tok = jwt.encode({"sub": "42", "aud": "kefu", "exp": now + 60, **claims_}, BIND_SECRET,
                         algorithm="HS256")
        assert code(tok) == "bad_token", claims_
    with warnings.catch_warnings():  # PyJWT wants 64 bytes for HS512; kefu refuses HS512 anyway
        warnings.simplefilter("ignore")
        hs512 = jwt.encode({"sub": "42", "aud": "kefu", "exp": now + 60}, BIND_SECRET, algorithm="HS512")
    assert code(hs512) == "bad_token"
    assert code(good, secret="") == "token_binds_off"


def test_page_sessions_get_pushes_in_their_form_and_follow_group_changes():
    signed = PageSession("c1", False, LIMITS, 0.0)
    seed = PageSession("c2", False, LIMITS, 0.0, bare_text=True)
    signed.bind_uid("token", "42", ("news",))
    seed.bind_uid("seed", "42")
    assert signed.channels == [uid_channel("42"), group_channel("news"), PAGES]
    assert signed.bound_frame() == [Send({"cmd": "bound", "uid": "42", "groups": ["news"]})]
    assert seed.bound_frame() == []  # an old page is told nothing

    env = page_push_envelope({"uid": "42", "n": 1}, "uid")
    assert signed.deliver(env) == [Send({"cmd": "push", "to": "uid", "data": {"uid": "42", "n": 1}})]
    assert seed.deliver(env) == [Send({"uid": "42", "n": 1})]
    assert signed.deliver(Envelope("message", "user", "", {"msg": "x"})) == []

    # a group change is the node's to follow (push/service.py), not a frame for the page
    assert signed.deliver(Envelope("group", "backend", "", {"op": "join", "group": "vip"})) == []
    assert signed.joined("vip") == [Send({"cmd": "joined", "group": "vip", "groups": ["news", "vip"]})]
    assert signed.joined("vip") == []
    assert signed.left("news")[0].frame["groups"] == ["vip"]
    assert PageSession("c3", False, LIMITS, 0.0).deliver(env) == [], "unbound: nothing"


def test_the_push_vocabulary():
    assert parse_command({"kefu": "join", "uid": 42, "group": "vip"}, ticket_required=True) == \
        GroupChange("join", "42", "vip")
    assert parse_command({"kefu": "leave", "task_id": "task 1", "group": "g"}, ticket_required=True) == \
        GroupChange("leave", "task 1", "g")
    assert parse_command({"kefu": "online", "uid": "u"}, ticket_required=False) == Online("u")
    assert parse_command({"kefu": "count", "group": "g"}, ticket_required=False) == Count("g")
    push = parse_command({"kefu": "push", "group": "g", "x": 1, "secret": "s"}, ticket_required=True)
    assert push.channels == (group_channel("g"),) and push.frame == {"group": "g", "x": 1}  # type: ignore[union-attr]
    task = parse_command({"task_id": "task 123456"}, ticket_required=True)
    assert task.channels == (uid_channel("task 123456"),)  # type: ignore[union-attr]
    for bad in ({"kefu": "join", "uid": "u"}, {"kefu": "online"}, {"kefu": "count"}, {"kefu": "x"},
                {"kefu": "join", "uid": "u", "group": "\x00"}, {"group": ""}, {"task_id": "a" * 129}):
        with pytest.raises(PushError):
            parse_command(bad, ticket_required=False)


async def test_group_stores_remember_per_uid_with_a_limit():
    async with services.redis_under_prefix() as (redis, prefix):
        for store in (MemoryGroups(max_uids=2), RedisGroups(redis, prefix)):
            await store.add("42", "news")
            await store.add("42", "news")
            await store.add("42", "vip")
            assert await store.of("42") == ["news", "vip"]
            for i in range(MAX_GROUPS - 2):
                await store.add("42", f"g{i}")
            with pytest.raises(PushError):
                await store.add("42", "one-too-many")
            await store.add("42", "news")  # already in it: fine
            await store.remove("42", "news")
            assert "news" not in await store.of("42")
            assert await store.of("nobody") == []
        memory = MemoryGroups(max_uids=1)
        await memory.add("a", "g")
        with pytest.raises(KefuError):
            await memory.add("b", "g")  # the embedded store is bounded
