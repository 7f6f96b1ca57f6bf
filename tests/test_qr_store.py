"""The QR store contract on both engines (in-memory and real Redis), and the pure push/page rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kefu.core.page import Bind, PageSession, parse_page_frame
from kefu.core.push import (
    PAGES,
    PushError,
    PushTarget,
    page_channel,
    page_ticket_channel,
    parse_push,
    uid_channel,
)
from kefu.core.routing import Envelope
from kefu.core.session import Limits, Send
from kefu.protocol import Ping
from kefu.push.port import decide
from kefu.qr.store import LocalQrStore, QrRecord, RedisQrStore, StoreFull
from kefu.store.redis_lane import RedisLane
from tests.support import services
from tests.support.clock import Clock


@pytest.fixture(params=["local", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[object, Clock | None]]:
    if request.param == "local":
        clock = Clock()
        yield LocalQrStore(clock=clock), clock
        return
    async with services.redis_under_prefix() as (redis, prefix):
        lane = RedisLane(redis)
        yield RedisQrStore(redis, prefix, lane), None
        await lane.close()


async def _elapse(clock: Clock | None, seconds: float) -> None:
    if clock is None:
        await asyncio.sleep(seconds)
    else:
        clock.t += seconds


async def test_uid_lifecycle(store):
    s, _ = store
    assert await s.reserve("u1", 30) is True
    assert await s.reserve("u1", 30) is False  # unique among live ones
    assert await s.get("u1") == QrRecord("reserved")
    assert await s.claim("u1", "T") is None  # no ticket yet
    await s.put("u1", "T+/=", 60)
    assert await s.get("u1") == QrRecord("live", "T+/=", 60)
    assert await s.reserve("u1", 30) is False
    assert await s.claim("u1", "wrong") is None
    assert await s.claim("u1", "T+/=") == 60
    assert await s.claim("u1", "T+/=") is None  # once
    assert (await s.get("u1")).state == "used"
    await s.release("u1", "T+/=")
    assert await s.claim("u1", "T+/=") == 60
    await s.drop("u1")
    assert await s.get("u1") is None
    assert await s.reserve("u1", 30) is True


async def test_records_expire_with_the_code(store):
    s, clock = store
    assert await s.reserve("short", 30)
    await s.put("short", "T", 1)
    await _elapse(clock, 1.2)
    assert await s.get("short") is None
    assert await s.claim("short", "T") is None
    assert await s.reserve("short", 30) is True


async def test_first_seen_dedupes_within_ttl(store):
    s, clock = store
    assert await s.first_seen("evt:o:1:SCAN", 1) is True
    assert await s.first_seen("evt:o:1:SCAN", 1) is False
    assert await s.first_seen("evt:o:2:SCAN", 1) is True
    await _elapse(clock, 1.2)
    assert await s.first_seen("evt:o:1:SCAN", 1) is True


async def test_a_callback_nonce_goes_with_one_body(store):
    s, clock = store
    assert await s.claim_nonce("1714036504", "42", "body-a", 1) is True
    assert await s.claim_nonce("1714036504", "42", "body-a", 1) is True  # WeChat re-sending
    assert await s.claim_nonce("1714036504", "42", "body-b", 1) is False  # a replay
    assert await s.claim_nonce("1714036504", "43", "body-b", 1) is True
    assert await s.first_seen("1714036504:42", 1) is True  # nonces and dedupe marks are apart
    await _elapse(clock, 1.2)
    assert await s.claim_nonce("1714036504", "42", "body-b", 1) is True


async def test_local_store_is_bounded():
    clock = Clock()
    s = LocalQrStore(max_codes=3, max_seen=2, clock=clock)
    for uid in ("a", "b", "c"):
        assert await s.reserve(uid, 10)
    with pytest.raises(StoreFull):
        await s.reserve("d", 10)
    clock.t += 11
    assert await s.reserve("d", 10)  # the expired ones made room
    for k in ("k1", "k2", "k3"):
        assert await s.first_seen(k, 100)
    assert len(s._seen) <= 2
    for n in ("n1", "n2", "n3"):
        assert await s.claim_nonce("1", n, "d", 100)
    assert len(s._nonces) <= 2


def test_push_targets():
    t = parse_push({"uid": "u1", "ticket": "T", "secret": "s", "data": 1}, ticket_required=True)
    assert t.channel == page_ticket_channel("u1", "T") and t.frame == {"uid": "u1", "ticket": "T", "data": 1}
    assert parse_push({"uid": 42, "x": 1}, ticket_required=False).channel == page_channel("42")
    # Without its ticket a uid never reaches a QR page over the port: only pages bound to it by a
    # token or a seed bind (docs/push.md); over HTTP (the API key) the QR page too.
    assert parse_push({"uid": "u1"}, ticket_required=True).channels == (uid_channel("u1"),)
    over_http = parse_push({"uid": "u1"}, ticket_required=False)
    assert over_http.channels == (page_channel("u1"), uid_channel("u1"))
    # uid wins over openid: a login push may carry both; broadcast wins over everything.
    assert parse_push({"uid": "u1", "openid": "o1"}, ticket_required=False).kind == "uid"
    assert parse_push({"openid": "o_1"}, ticket_required=True).channel == "user:o_1"
    assert parse_push({"broadcast": True, "uid": "u"}, ticket_required=True).channel == PAGES
    for bad in ([1], "x", {}, {"uid": "a:b"}, {"uid": True}, {"uid": "u", "ticket": 5},
                {"openid": "a b"}, {"broadcast": "yes"}):
        with pytest.raises(PushError):
            parse_push(bad, ticket_required=False)
    assert page_ticket_channel("u", "T1") != page_ticket_channel("u", "T2")


def test_push_lines():
    verdict = decide(b'{"uid":"u","ticket":"T"}', "")
    assert isinstance(verdict, PushTarget) and verdict.channel == page_ticket_channel("u", "T")
    assert decide(b"\xff\xfe", "") == "not JSON"
    assert decide(b'{"uid":"u","ticket":"T","n":NaN}', "") == "not JSON"
    assert decide(b"[]", "") == "not a JSON object"
    assert decide(b'{"uid":"u","ticket":"T"}', "s3cret") == "wrong or missing secret"
    verdict = decide(b'{"uid":"u","ticket":"T","secret":"s3cret"}', "s3cret")
    assert isinstance(verdict, PushTarget) and "secret" not in verdict.frame


def test_page_session_binds_only_when_told_and_gets_only_pushes():
    limits = Limits(max_message_bytes=100, heartbeat_timeout=40, rate_per_sec=1, rate_burst=2,
                    error_strikes=3)
    s = PageSession("c1", False, limits, now=0.0)
    assert s.channels == []
    actions, frame = s.receive('{"ticket":"T","expire_seconds":60,"uid":"u1"}', 1.0)
    assert actions == []
    assert frame == Bind("u1", "T", {"ticket": "T", "expire_seconds": 60, "uid": "u1"})
    assert s.channels == []  # the handler binds after checking the ticket
    assert s.bind(frame) == [Send({"ticket": "T", "expire_seconds": 60, "uid": "u1"})]  # the echo
    assert s.channels == [page_channel("u1"), page_ticket_channel("u1", "T"), PAGES]
    assert s.deliver(Envelope("push", "backend", "", {"a": 1})) == [Send({"a": 1})]
    assert s.deliver(Envelope("message", "user", "", {"msg": "x"})) == []
    assert isinstance(parse_page_frame('{"cmd":"ping"}'), Ping)
    s.receive('{"ticket":"T","uid":"u1"}', 1.0)
    actions, frame = s.receive('{"ticket":"T","uid":"u1"}', 1.0)
    assert frame is None and actions[0].frame["code"] == "rate_limited"
    assert s.check(40.0, 0) is None and s.check(41.5, 0) is not None
