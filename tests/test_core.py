"""The pure core, driven without sockets: frame rules, budgets, fan-out decisions, the JSON reader."""

from __future__ import annotations

import json

import pytest

from kefu import jsonio
from kefu.core.limits import Strikes, TokenBucket
from kefu.core.routing import Envelope, kick_envelope, message_envelope, read_envelope
from kefu.core.session import Accepted, CloseWith, Limits, Send, Session
from kefu.errors import Close, KefuError, Unavailable
from kefu.protocol import Identity, MarkRead, Message, Ping, SendMessage, Sync, parse

USER = Identity(role="user", openid="o_user")
AGENT = Identity(role="agent", agent_id=7, agent_name="alice")
LIMITS = Limits(max_message_bytes=16, heartbeat_timeout=40, rate_per_sec=1, rate_burst=2, error_strikes=3)


def err(text: str, who: Identity = USER) -> str:
    with pytest.raises(KefuError) as e:
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
    ('{"msg":"\\ud800","type":2}', USER, "bad_json"),  # the JSON reader refuses lone surrogates
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
    with pytest.raises(KefuError) as e:
        parse('{"msg":"x","type":1,"openid":"o","cmid":"c9"}', USER, 16)
    assert e.value.frame() == {"cmd": "error", "code": "forbidden", "message": e.value.message,
                               "retry": False, "cmid": "c9"}


def test_token_bucket_and_strikes_follow_the_clock():
    b = TokenBucket(rate=1, burst=2)
    assert [b.take(0), b.take(0), b.take(0)] == [True, True, False]
    assert b.take(1.0) is True and b.take(1.0) is False
    s = Strikes(limit=2)
    assert [s.hit(0), s.hit(0), s.hit(0)] == [False, False, True]
    s2 = Strikes(limit=2)
    assert [s2.hit(0), s2.hit(0), s2.hit(5), s2.hit(5)] == [False, False, False, False]


def frames(actions) -> list[dict]:
    return [a.frame for a in actions if isinstance(a, Send)]


def test_session_rate_limits_frames_but_not_pings_and_tracks_idleness():
    s = Session(USER, "c1", True, LIMITS, now=0)
    assert s.receive('{"msg":"a"}', 0) == ([], SendMessage("o_user", "a", None))
    assert s.receive('{"msg":"b"}', 0)[1] == SendMessage("o_user", "b", None)
    actions, req = s.receive('{"msg":"c","cmid":"x"}', 0)
    assert req is None
    [error] = frames(actions)
    assert (error["code"], error["cmid"], error["retry"]) == ("rate_limited", "x", True)
    actions, req = s.receive('{"cmd":"ping"}', 0)
    assert req is None and frames(actions)[0]["cmd"] == "pong"
    assert frames(s.receive('{"cmd":"sync"}', 0)[0])[0]["code"] == "rate_limited"  # every other frame counts
    assert s.check(40, 0) is None and s.check(40.1, 0) == CloseWith(Close.HEARTBEAT, "heartbeat timeout")
    s.touch(40.1)
    assert s.check(80, 0) is None


def test_client_faults_strike_toward_4429_but_unavailable_never_does():
    s = Session(USER, "c1", True, LIMITS, now=0)
    for _ in range(10):
        assert all(isinstance(a, Send) for a in s.failed(Unavailable("down"), 0))
    actions = []
    for _ in range(4):
        actions = s.receive("not json", 0)[0]
    assert frames(actions)[0]["code"] == "bad_json"
    assert actions[-1] == CloseWith(Close.TOO_MANY_ERRORS, "too many errors")


def test_binary_frames_are_refused_with_an_error_frame():
    actions, req = Session(USER, "c1", False, LIMITS, 0).receive(b"\x00", 0)
    assert req is None and frames(actions)[0]["code"] == "binary"


def test_hello_and_sync_carry_the_epoch_and_acks_tell_the_truth():
    s = Session(USER, "c1", True, LIMITS, 0, epoch="e1")
    [hello] = frames(s.open())
    assert hello["epoch"] == "e1" and hello["openid"] == "o_user"
    assert Session(USER, "c1", False, LIMITS, 0).open() == []
    m = _msg()
    assert frames(s.accepted(SendMessage("o_user", "hi", "c1"), Accepted(m, delivered=False))) == [
        {"cmd": "ack", "cmid": "c1", "id": 1, "ts": 2, "delivered": False}]
    dup = frames(s.accepted(SendMessage("o_user", "hi", "c1"), Accepted(m, True, dup=True)))
    assert dup[0]["dup"] is True
    assert s.accepted(SendMessage("o_user", "hi", None), Accepted(m, True)) == []
    [sync] = frames(s.synced(0, [m], more=False))
    assert sync["epoch"] == "e1" and sync["messages"][0]["id"] == 1


def test_a_broker_gap_makes_v2_sockets_sync_and_closes_legacy_ones():
    assert frames(Session(USER, "c1", True, LIMITS, 0).gap()) == [{"cmd": "resync"}]
    legacy = Session(USER, "c1", False, LIMITS, 0)
    assert legacy.gap() == [CloseWith(Close.RESYNC, "reconnect: messages may have been missed")]


def _msg(sender="user", **kw) -> Message:
    return Message(id=1, ts=2, openid="o_user", sender=sender, msg="hi", **kw)


def delivered(session: Session, env: Envelope) -> dict | None:
    got = frames(session.deliver(env))
    return got[0] if got else None


def test_fan_out_rules_for_legacy_and_v2_sockets():
    from_user = Envelope.loads(message_envelope(_msg(), origin="u1").dumps())
    agent_legacy = Session(AGENT, "a1", False, LIMITS, 0)
    agent_v2 = Session(AGENT, "a2", True, LIMITS, 0)
    user_origin = Session(USER, "u1", True, LIMITS, 0)
    user_other_v2 = Session(USER, "u2", True, LIMITS, 0)
    user_other_legacy = Session(USER, "u3", False, LIMITS, 0)
    assert delivered(agent_legacy, from_user)["msg"] == "hi"
    assert delivered(agent_v2, from_user)["openid"] == "o_user"
    assert delivered(user_origin, from_user) is None          # the sender gets an ack instead
    assert delivered(user_other_v2, from_user)["from"] == "user"
    assert delivered(user_other_legacy, from_user) is None    # would render as a message from the agent

    reply = message_envelope(_msg("agent", agent_id=7, agent="alice"), origin="a2")
    assert delivered(user_other_legacy, reply)["msg"] == "hi"
    assert delivered(agent_legacy, reply) is None and delivered(agent_v2, reply) is None
    assert delivered(Session(AGENT, "a9", True, LIMITS, 0), reply)["agent"] == "alice"

    read = read_envelope("o_user", "agent", 5, origin="a2")
    assert delivered(user_other_v2, read) == {"cmd": "read", "openid": "o_user", "by": "agent", "upto": 5}
    assert delivered(user_other_legacy, read) is None


def test_a_session_ends_with_its_token():
    who = Identity(role="user", openid="o_user", expires_at=1000)
    assert who == USER  # expiry is not part of who someone is
    s = Session(who, "c", True, LIMITS, 0)
    assert s.check(1, 999.9) is None
    assert s.check(1, 1000) == CloseWith(Close.UNAUTHORIZED, "token expired")
    assert Session(USER, "c", True, LIMITS, 0).check(1, 10**12) is None


def test_kick_reaches_only_sockets_of_that_token():
    s = Session(USER, "u1", True, LIMITS, 0, token_digest="abc")
    other = Session(USER, "u2", True, LIMITS, 0, token_digest="def")
    kick = kick_envelope("user", "abc")
    assert s.deliver(kick) == [CloseWith(Close.UNAUTHORIZED, "logged out")]
    assert other.deliver(kick) == []
    assert other.deliver(kick_envelope("user")) == [CloseWith(Close.UNAUTHORIZED, "logged out")]


def test_envelope_parts_encode_exactly_like_the_whole():
    env = message_envelope(_msg(), origin="o\"1")
    assert env.head() + json.dumps(env.frame, ensure_ascii=False, separators=(",", ":")) + env.tail() \
        == env.dumps()
    assert Envelope.loads(env.dumps()) == env


@pytest.mark.parametrize("text", [
    "NaN", '{"a":Infinity}', '{"a":-Infinity}', '{"a":1e999}', "[" * 40 + "]" * 40, '{"a":"\\ud800"}',
    '{"\\udfff":1}', "[" * 100_000, '{"a":' + "9" * 30 + "}", "\ufeff{}", "{'a':1}", ""])
def test_the_json_reader_refuses_what_peers_cannot_take(text):
    with pytest.raises(KefuError) as e:
        jsonio.loads(text)
    assert e.value.code == "bad_json"


@pytest.mark.parametrize(("text", "value"), [
    ('{"n":18446744073709551615}', {"n": 2**64 - 1}),  # 20 digits: read exactly, not as a float
    ('[-9223372036854775808]', [-(2**63)]),
    ('{"s":"12345678901234567890123","n":1.5}', {"s": "12345678901234567890123", "n": 1.5}),
    ("[" * 15 + '{"a":' * 15 + "1" + "}" * 15 + "]" * 15, None),  # 30 brackets of both kinds
])
def test_the_json_reader_keeps_long_integers_exact_and_counts_both_brackets(text, value):
    got = jsonio.loads(text)
    assert got == (value if value is not None else json.loads(text))


@pytest.mark.parametrize("text", [
    '{"n":18446744073709551616}', "[" * 16 + '{"a":' * 16 + "1" + "}" * 16 + "]" * 16])
def test_the_json_reader_refuses_integers_past_64_bits_and_nesting_of_either_bracket(text):
    with pytest.raises(KefuError):
        jsonio.loads(text)


def test_the_json_reader_and_writer_round_trip_what_they_accept():
    obj = {"msg": "你好 😀", "n": 2**63 - 1, "f": 1.5, "l": [[[]]], "t": True, "z": None}
    assert jsonio.loads(jsonio.dumps(obj)) == obj
    assert jsonio.loads(jsonio.dumps(obj).encode()) == obj
    for bad in ({"x": float("nan")}, {"x": "\ud800"}):
        with pytest.raises(ValueError):
            jsonio.dumps(bad)


def test_agent_only_kinds_never_go_to_the_users_channel():
    from kefu.core.routing import AGENTS, audiences
    note = Message(id=3, ts=4, openid="o_user", sender="agent", msg="VIP", agent_id=7, kind="note")
    image = Message(id=5, ts=6, openid="o_user", sender="user", msg="[图片]", kind="image",
                    meta={"image": {"id": "abc", "w": 10, "h": 20}})
    assert audiences(note) == ("", AGENTS) and not note.for_user
    assert audiences(image) == ("user:o_user", AGENTS) and image.for_user
    assert Message.from_wire(image.to_wire()) == image
    assert "kind" not in _msg().to_wire() and "meta" not in _msg().to_wire()  # legacy shape unchanged


def test_the_team_remembers_a_waiting_conversation_until_something_changes():
    from kefu.core.team import Team
    team = Team()
    assert not team.still_waiting("o1")
    team.nobody_took("o1")
    assert team.still_waiting("o1") and not team.still_waiting("o2")
    agent = {"id": 7, "name": "a"}
    for taken in ("assigned", "claimed"):  # another conversation taken makes no room
        team.apply({"cmd": "conversation", "openid": "o2", "status": "assigned", "assignee": agent,
                    "event": taken, "by": None})
        assert team.still_waiting("o1") and team.holder("o2") == 7
    team.apply({"cmd": "profile", "openid": "o3", "profile": {}})
    assert team.still_waiting("o1")
    team.apply({"cmd": "conversation", "openid": "o2", "status": "open", "assignee": None,
                "event": "released", "by": agent})
    assert not team.still_waiting("o1") and team.holder("o2") is None  # room was made: look again
    team.nobody_took("o1")
    team.apply({"cmd": "presence", "agent": agent, "status": "online"})
    assert not team.still_waiting("o1")  # an agent came online: look again


def test_a_message_given_its_id_keeps_every_other_field():
    from dataclasses import fields
    marks = {f.name: object() for f in fields(Message)}  # a field added later is covered too
    moved = Message(**marks).with_id(42)
    for name, mark in marks.items():
        assert getattr(moved, name) is (42 if name == "id" else mark), name
    assert Message(**marks).with_id(42, ts=9).ts == 9
