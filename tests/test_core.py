"""The pure core, driven without sockets: frame rules, budgets, fan-out decisions, ids and dedupe."""

from __future__ import annotations

import json

import pytest

from kefu.broker.local import LocalSequencer
from kefu.core.limits import Strikes, TokenBucket
from kefu.core.routing import Envelope, message_envelope, read_envelope
from kefu.core.session import Limits, Session
from kefu.protocol import Identity, MarkRead, Message, Ping, ProtocolError, SendMessage, Sync, parse

USER = Identity(role="user", openid="o_user")
AGENT = Identity(role="agent", agent_id=7, agent_name="alice")
LIMITS = Limits(max_message_bytes=16, heartbeat_timeout=40, rate_per_sec=1, rate_burst=2, error_strikes=3)


def err(text: str, who: Identity = USER) -> str:
    with pytest.raises(ProtocolError) as e:
        parse(text, who, 16)
    return e.value.code


def test_legacy_frames_parse_to_the_senders_conversation():
    assert parse('{"msg":"hi","type":2}', USER, 16) == SendMessage("o_user", "hi", None)
    assert parse('{"msg":"hi","type":"2","cmid":"c1"}', USER, 16) == SendMessage("o_user", "hi", "c1")
    assert parse('{"msg":"yo","type":1,"openid":"o_x"}', AGENT, 16) == SendMessage("o_x", "yo", None)
    assert parse('{"msg":"no type"}', USER, 16) == SendMessage("o_user", "no type", None)


def test_commands():
    assert parse('{"cmd":"ping"}', USER, 16) == Ping()
    assert parse('{"cmd":"sync"}', AGENT, 16) == Sync(after=0, limit=200)
    assert parse('{"cmd":"sync","after":5,"limit":500}', USER, 16) == Sync(5, 500)
    assert parse('{"cmd":"read"}', USER, 16) == MarkRead("o_user", None)
    assert parse('{"cmd":"read","openid":"o_x","upto":9}', AGENT, 16) == MarkRead("o_x", 9)


@pytest.mark.parametrize(("text", "who", "code"), [
    ("{", USER, "bad_json"),
    ('"str"', USER, "bad_json"),
    ('{"msg":"x","type":3}', USER, "unknown_type"),
    ('{"msg":"x","type":true}', USER, "unknown_type"),
    ('{"cmd":"nope"}', USER, "unknown_cmd"),
    ('{"msg":"x","type":1,"openid":"o_x"}', USER, "forbidden"),
    ('{"msg":"x","type":2,"openid":"o_other"}', USER, "forbidden"),
    ('{"msg":"x","type":2}', AGENT, "forbidden"),
    ('{"cmd":"read","openid":"o_other"}', USER, "forbidden"),
    ('{"msg":"x","type":1}', AGENT, "bad_frame"),
    ('{"msg":"x","type":1,"openid":"bad id!"}', AGENT, "bad_frame"),
    ('{"msg":"","type":2}', USER, "bad_frame"),
    ('{"msg":["x"],"type":2}', USER, "bad_frame"),
    ('{"msg":"x","cmid":""}', USER, "bad_frame"),
    ('{"msg":"x","cmid":"' + "c" * 65 + '"}', USER, "bad_frame"),
    ('{"msg":"\\ud800","type":2}', USER, "bad_frame"),
    ('{"cmd":"sync","after":"1"}', USER, "bad_frame"),
    ('{"cmd":"sync","limit":0}', USER, "bad_frame"),
    ('{"cmd":"read","upto":-1}', USER, "bad_frame"),
    ('{"msg":"' + "界" * 6 + '","type":2}', USER, "too_large"),  # 18 bytes > 16
])
def test_refusals(text, who, code):
    assert err(text, who) == code


def test_size_limit_counts_utf8_bytes_not_characters():
    assert parse(json.dumps({"msg": "界" * 5}), USER, 16).msg == "界" * 5  # 15 bytes
    assert parse(json.dumps({"msg": "a" * 16}), USER, 16).msg == "a" * 16


def test_errors_echo_the_cmid_so_clients_can_match_them():
    with pytest.raises(ProtocolError) as e:
        parse('{"msg":"x","type":1,"openid":"o","cmid":"c9"}', USER, 16)
    assert e.value.frame() == {"cmd": "error", "code": "forbidden", "message": e.value.message, "cmid": "c9"}


def test_token_bucket_and_strikes_follow_the_clock():
    b = TokenBucket(rate=1, burst=2)
    assert [b.take(0), b.take(0), b.take(0)] == [True, True, False]
    assert b.take(1.0) is True and b.take(1.0) is False
    s = Strikes(limit=2)
    assert [s.hit(0), s.hit(0), s.hit(0)] == [False, False, True]
    s2 = Strikes(limit=2)
    assert [s2.hit(0), s2.hit(0), s2.hit(5), s2.hit(5)] == [False, False, False, False]


def test_session_rate_limits_messages_but_not_pings_and_tracks_idleness():
    s = Session(USER, "c1", True, LIMITS, now=0)
    s.receive('{"msg":"a"}', 0)
    s.receive('{"msg":"b"}', 0)
    with pytest.raises(ProtocolError) as e:
        s.receive('{"msg":"c","cmid":"x"}', 0)
    assert (e.value.code, e.value.cmid) == ("rate_limited", "x")
    assert s.receive('{"cmd":"ping"}', 0) == Ping()
    assert not s.is_idle(40) and s.is_idle(40.1)
    s.touch(40.1)
    assert not s.is_idle(80)


def _msg(sender="user", **kw) -> Message:
    return Message(id=1, ts=2, openid="o_user", sender=sender, msg="hi", **kw)


def test_fan_out_rules_for_legacy_and_v2_sockets():
    from_user = Envelope.loads(message_envelope(_msg(), origin="u1").dumps())
    agent_legacy = Session(AGENT, "a1", False, LIMITS, 0)
    agent_v2 = Session(AGENT, "a2", True, LIMITS, 0)
    user_origin = Session(USER, "u1", True, LIMITS, 0)
    user_other_v2 = Session(USER, "u2", True, LIMITS, 0)
    user_other_legacy = Session(USER, "u3", False, LIMITS, 0)
    assert agent_legacy.frame_for(from_user)["msg"] == "hi"
    assert agent_v2.frame_for(from_user)["openid"] == "o_user"
    assert user_origin.frame_for(from_user) is None          # the sender gets an ack instead
    assert user_other_v2.frame_for(from_user)["from"] == "user"
    assert user_other_legacy.frame_for(from_user) is None    # would render as a message from the agent

    reply = message_envelope(_msg("agent", agent_id=7, agent="alice"), origin="a2")
    assert user_other_legacy.frame_for(reply)["msg"] == "hi"
    assert agent_legacy.frame_for(reply) is None and agent_v2.frame_for(reply) is None
    assert Session(AGENT, "a9", True, LIMITS, 0).frame_for(reply)["agent"] == "alice"

    read = read_envelope("o_user", "agent", 5, origin="a2")
    assert user_other_v2.frame_for(read) == {"cmd": "read", "openid": "o_user", "by": "agent", "upto": 5}
    assert user_other_legacy.frame_for(read) is None


def test_a_session_ends_with_its_token():
    who = Identity(role="user", openid="o_user", expires_at=1000)
    assert who == USER  # expiry is not part of who someone is
    s = Session(who, "c", True, LIMITS, 0)
    assert not s.token_expired(999.9) and s.token_expired(1000)
    assert not Session(USER, "c", True, LIMITS, 0).token_expired(10**12)


def test_kick_reaches_only_sockets_of_that_token():
    s = Session(USER, "u1", True, LIMITS, 0, token_digest="abc")
    other = Session(USER, "u2", True, LIMITS, 0, token_digest="def")
    kick = Envelope("kick", "user", token_digest="abc")
    assert s.kicked_by(kick) and not other.kicked_by(kick)
    assert s.frame_for(kick) is None


async def test_local_sequencer_dedupes_within_ttl_and_respects_the_floor():
    seq = LocalSequencer(dedupe_ttl=10, max_entries=3)
    await seq.raise_floor(100)
    assert await seq.claim("u:a", "c1", 1000) == (101, 1000, False)
    assert await seq.claim("u:a", "c1", 2000) == (101, 1000, True)
    assert await seq.claim("u:b", "c1", 2000) == (102, 2000, False)   # per-sender namespace
    assert await seq.claim("u:a", None, 2000) == (103, 2000, False)
    assert (await seq.claim("u:a", "c1", 20_000))[2] is False          # past the TTL: new message
    await seq.forget("u:a", "c1")
    assert (await seq.claim("u:a", "c1", 20_001))[2] is False
    for i in range(5):                                                  # bounded memory
        await seq.claim("u:z", f"k{i}", 20_002)
    assert len(seq._seen) <= 3
