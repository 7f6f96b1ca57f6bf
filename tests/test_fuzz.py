"""Property-based fuzzing of every parser that untrusted bytes reach first: the JSON reader, the
chat and QR page frame parsers, and the push port's line parser. Whatever comes in, the answer is
a value or a `KefuError` (a `fail` reason for the push port) — never another exception — and
whatever is accepted can be written back out by the one JSON writer."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kefu import jsonio
from kefu.core.page import Bind, Ignored, SeedBind, TokenBind, parse_page_frame
from kefu.core.push import PushTarget
from kefu.errors import BadJson, KefuError
from kefu.protocol import Identity, MarkRead, Message, Ping, SendMessage, Sync, ack_frame, parse, read_frame
from kefu.push.lines import Lines
from kefu.push.port import decide, looks_like_http

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
USER = Identity(role="user", openid="o_fuzz")
AGENT = Identity(role="agent", agent_id=7, agent_name="fuzzer")

# Every code point, lone surrogates included (st.text() leaves those out by default).
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
any_text = st.text(any_char, max_size=200)
keys = st.sampled_from(["cmd", "type", "msg", "openid", "cmid", "after", "limit", "upto", "uid",
                        "ticket", "expire_seconds", "broadcast", "secret", "token"]) | any_text
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | any_text
           | st.sampled_from(["ping", "sync", "read", "dance", "1", "2", "o_fuzz", "u-1"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(keys, inner, max_size=5), max_leaves=30)
objects = st.dictionaries(keys, json_values, max_size=6)


def loose_json(value: Any) -> str:
    """What a careless or hostile client could send: Python's JSON, NaN and all."""
    return json.dumps(value, allow_nan=True, ensure_ascii=bool(hash(repr(value)) & 1))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def reencodes(value: Any) -> None:
    text = jsonio.dumps(value)
    assert jsonio.loads(text) == value or _has_negative_zero(value)


def _has_negative_zero(value: Any) -> bool:
    if isinstance(value, float):
        return value == 0 and math.copysign(1, value) < 0
    if isinstance(value, dict):
        return any(_has_negative_zero(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_negative_zero(v) for v in value)
    return False


# ---- the JSON reader -------------------------------------------------------------------------

@FUZZ
@given(st.one_of(any_text, st.binary(max_size=300), json_values.map(loose_json), objects.map(loose_json)))
@example(nested(10_000))
@example('{"a":' * 5000 + "1" + "}" * 5000)
@example('"\\ud800"')
@example(b'"\xed\xa0\x80"')  # a surrogate spelled in UTF-8
@example("1e999")
@example("-Infinity")
@example("1" * 5000)
@example('{"x": 123456789012345678901234567890}')
@example(b"\xff\xfe{")
def test_the_json_reader_returns_safe_values_or_bad_json(data: str | bytes) -> None:
    try:
        value = jsonio.loads(data)
    except BadJson:
        return
    reencodes(value)


@FUZZ
@given(json_values)
def test_what_the_reader_accepts_the_writer_writes_and_the_reader_reads_back(value: Any) -> None:
    try:
        value = jsonio.loads(loose_json(value))
    except BadJson:
        return
    reencodes(value)


@FUZZ
@given(json_values)
def test_the_writer_writes_valid_json_or_refuses_with_value_error(value: Any) -> None:
    try:
        text = jsonio.dumps(value)
    except ValueError:
        return
    text.encode("utf-8")  # valid UTF-8 ...
    json.loads(text)  # ... and valid JSON


# ---- the frame parsers -----------------------------------------------------------------------

chat_frames = st.one_of(
    any_text,
    objects.map(loose_json),
    st.fixed_dictionaries({"type": st.sampled_from([1, 2, "1", "2", 3, None]), "msg": scalars,
                           "openid": scalars, "cmid": scalars}).map(loose_json),
    st.fixed_dictionaries({"cmd": st.sampled_from(["sync", "read", "ping"]), "after": scalars,
                           "limit": scalars, "upto": scalars, "openid": scalars}).map(loose_json),
)


@FUZZ
@given(chat_frames, st.sampled_from([USER, AGENT]))
@example(nested(100), USER)
@example('{"cmd":"sync","after":9223372036854775808}', AGENT)
@example('{"cmd":"read","upto":-1}', USER)
@example('{"msg":"x","type":2,"cmid":"\\ud800"}', USER)
def test_chat_frames_parse_or_raise_kefu_errors(text: str, who: Identity) -> None:
    try:
        frame = parse(text, who, 1000)
    except KefuError as e:
        jsonio.dumps(e.frame())  # the error frame itself can always be sent
        return
    if isinstance(frame, SendMessage):
        assert frame.msg and len(frame.msg.encode("utf-8")) <= 1000
        reencodes(Message(1, 1, frame.openid, who.role, frame.msg, cmid=frame.cmid).to_wire())
        if frame.cmid is not None:
            reencodes(ack_frame(frame.cmid, 1, 1, True))
    elif isinstance(frame, MarkRead):
        reencodes(read_frame(frame.openid, who.role, frame.upto or 0))
    elif isinstance(frame, Sync):
        assert 0 <= frame.after < 2**63 and 1 <= frame.limit <= 500
    else:
        assert isinstance(frame, Ping)


page_frames = st.one_of(
    any_text,
    objects.map(loose_json),
    st.fixed_dictionaries({"uid": scalars, "ticket": scalars, "expire_seconds": json_values},
                          optional={"cmd": scalars, "x": json_values}).map(loose_json),
)


@FUZZ
@given(page_frames)
@example('{"uid":"u","ticket":"t","expire_seconds":' + nested(40) + "}")
@example('{"uid":"u","ticket":"\\udfff"}')
@example('{"uid":1e400,"ticket":"t"}')
def test_page_frames_parse_or_raise_kefu_errors(text: str) -> None:
    for bare_text, bound in ((False, False), (True, False), (True, True)):  # /ws/qr, /ws/push
        try:
            frame = parse_page_frame(text, bare_text=bare_text, bound=bound)
        except KefuError as e:
            jsonio.dumps(e.frame())
            continue
        if isinstance(frame, Bind):
            reencodes(frame.raw)  # the echo is sent back as it came
        elif isinstance(frame, SeedBind):
            jsonio.dumps({"uid": frame.uid})  # it becomes a channel name and a bound frame
        else:
            assert isinstance(frame, Ping | TokenBind | Ignored)


# ---- the push port ---------------------------------------------------------------------------

push_lines = st.one_of(
    st.binary(max_size=300),
    objects.map(lambda o: loose_json(o).encode("utf-8", "surrogatepass")),
    st.fixed_dictionaries({}, optional={"uid": scalars, "ticket": scalars, "openid": scalars,
                                        "broadcast": scalars, "secret": scalars, "msg": json_values,
                                        "group": scalars, "task_id": scalars,
                                        "kefu": st.sampled_from(["push", "join", "leave", "online",
                                                                 "count", "x"])})
    .map(lambda o: loose_json(o).encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(push_lines, st.sampled_from(["", "s3cret"]))
@example(b'{"broadcast":true,"x":NaN}', "")
@example(b'{"uid":"u","ticket":"t","x":"\\ud800"}', "")
@example(b'{"openid":"o_1","deep":' + nested(64).encode() + b"}", "")
@example(b'{"broadcast":true,"secret":"s3cret"}', "s3cret")
def test_push_lines_decide_or_fail_never_raise(line: bytes, secret: str) -> None:
    verdict = decide(line, secret)
    if isinstance(verdict, str):
        assert verdict  # a reason, logged with the `fail`
        return
    if not isinstance(verdict, PushTarget):  # join / leave / online / count: names, no data
        return
    assert verdict.channels and all(isinstance(c, str) and c for c in verdict.channels)
    assert "secret" not in verdict.frame and "kefu" not in verdict.frame
    reencodes(verdict.frame)
    jsonio.dumps(verdict.envelope().frame)  # what the sockets get


@FUZZ
@given(st.binary(max_size=200) | objects.map(lambda o: loose_json(o).encode("utf-8", "surrogatepass")))
def test_http_detection_never_raises_and_never_takes_a_json_object_for_http(line: bytes) -> None:
    http = looks_like_http(line)
    if line.strip().startswith(b"{"):
        assert not http


def _lines_whole(stream: bytes, limit: int) -> list[bytes | None]:
    """What cutting `stream` at its newlines gives, read all at once: the reference."""
    *complete, last = stream.split(b"\n")
    out: list[bytes | None] = [line if len(line) <= limit else None for line in complete]
    if len(last) > limit:
        out.append(None)  # cut off by the end, and over-long all the same
    elif last.strip():
        out.append(last)
    return out


@FUZZ
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"x" * 30, b"\n\n"]), max_size=30),
       st.integers(min_value=1, max_value=24))
@example([b"ab\ncd", b"ef\n"], 4)
@example([b"x" * 5, b"x" * 5, b"\nok\n"], 4)  # over the limit only across chunks
@example([b"abcd\n"], 4)  # exactly the limit
@example([b"tail without newline"], 64)
@example([b"      "], 4)  # a blank tail, but over-long
def test_the_port_cuts_any_chunking_into_the_same_bounded_lines(chunks: list[bytes], limit: int) -> None:
    lines = Lines(limit)
    got: list[bytes | None] = []
    for chunk in chunks:
        got += lines.feed(chunk)
        assert len(lines._part) <= limit  # an over-long line is never held whole
    got += lines.end()
    assert got == _lines_whole(b"".join(chunks), limit)
