"""Frames as clients send them: fragmented, pinged, not UTF-8, or pinging without reading.

The inbox (server/kefu/ws/inbox.py) is driven directly with websockets' frames; the rest runs
against a real server over a bare socket, since no client library sends such frames."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc

import httpx
import pytest
from websockets.frames import Frame, Opcode

from kefu.ws.inbox import Inbox
from kefu.ws.transport import text_frame
from tests.support.rawws import CONT, PING, PONG, TEXT, RawWs, frame
from tests.support.wsclient import WsClient
from tests.test_slow_reader_memory import rss_mib

# Frames are handled the same on both backends: one is enough.
embedded_only = pytest.mark.parametrize("deployment", ["embedded"], indirect=True)


async def test_the_inbox_joins_fragments_decodes_across_them_and_holds_reading_when_full():
    holds: list[bool] = []
    inbox = Inbox(holds.append, depth=4)
    word = "界".encode()  # three bytes, split across fragments below
    inbox.put(Frame(Opcode.TEXT, b"a" + word[:1], fin=False))
    inbox.put(Frame(Opcode.CONT, word[1:2], fin=False))
    inbox.put(Frame(Opcode.PING, b"x"))  # control frames may come between fragments
    inbox.put(Frame(Opcode.CONT, word[2:] + b"b", fin=True))
    inbox.put(Frame(Opcode.BINARY, b"\x00\xff", fin=True))
    assert await inbox.get() == "a界b"
    assert await inbox.get() == b"\x00\xff"

    for i in range(6):
        inbox.put(Frame(Opcode.TEXT, str(i).encode()))
    assert holds == [True]  # over 4 waiting: reading stops
    for i in range(3):
        assert await inbox.get() == str(i)
    assert holds == [True]
    assert await inbox.get() == "3"
    assert holds == [True, False]  # down to half: reading goes on

    with pytest.raises(UnicodeDecodeError):
        inbox.put(Frame(Opcode.TEXT, b"\xff\xfe"))
    with pytest.raises(UnicodeDecodeError):  # a fragment that ends inside a character, at the end
        inbox.put(Frame(Opcode.TEXT, word[:2], fin=False))
        inbox.put(Frame(Opcode.CONT, b"", fin=True))

    assert [await inbox.get() for _ in range(2)] == ["4", "5"]
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.end()  # the peer closed: the reader is told at once
    assert await waiting is None

    ended = Inbox(holds.append)
    ended.put(Frame(Opcode.TEXT, b"unread"))
    ended.end()  # what is still waiting is dropped: nothing can be answered on a closing socket
    assert await ended.get() is None
    ended.put(Frame(Opcode.TEXT, b"late"))
    assert await ended.get() is None


async def _agent_and_raw_user(server, agent: str, user: str) -> tuple[WsClient, RawWs, str]:
    """An agent's socket, and a user's raw socket past its hello."""
    server.create_agent(agent)
    ws = await WsClient.connect(server.ws_url, server.agent_token(agent))
    token, openid = server.user_token(user)
    raw = RawWs.connect(server.port, f"/ws?token={token}&v=2")
    assert raw.status == 101
    assert json.loads(raw.read_frame().payload)["cmd"] == "hello"
    return ws, raw, openid


async def test_the_inbox_keeps_nothing_its_reader_has_taken_when_it_never_runs_empty():
    """A client that keeps a message always waiting (pipelining faster than the loop drains):
    what was read must be let go, or memory grows with every message."""
    inbox = Inbox(lambda on: None)
    inbox.put(Frame(Opcode.BINARY, bytearray(1000)))  # each put copies it into a new message
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):  # 20 MB pass through; one message waits all along
            inbox.put(Frame(Opcode.BINARY, bytearray(1000)))
            assert await inbox.get() == bytes(1000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000


def test_a_text_frame_is_framed_as_websockets_frames_it():
    for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = ("é" * n).encode()[:n]
        assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False), n


@embedded_only
async def test_a_fragmented_message_is_one_message_and_pings_get_their_pongs(server):
    agent, raw, openid = await _agent_and_raw_user(server, "ann", "fragments")

    raw.send_ping(b"are you there")
    pong = raw.read_frame()
    assert (pong.opcode, pong.payload) == (PONG, b"are you there")

    text = json.dumps({"msg": "界面 ok", "type": 2, "cmid": "frag-1"}, ensure_ascii=False).encode()
    cut = text.index("界".encode()) + 1  # inside the character
    raw.sock.sendall(frame(TEXT, text[:cut], fin=False) + frame(CONT, text[cut:cut + 1], fin=False)
                     + frame(CONT, text[cut + 1:]))
    ack = json.loads(raw.read_frame().payload)
    assert ack["cmd"] == "ack" and ack["cmid"] == "frag-1"
    got = await agent.recv()
    assert (got["msg"], got["openid"]) == ("界面 ok", openid)
    raw.close()
    await agent.close()


@embedded_only
async def test_frames_in_one_read_and_frames_cut_across_reads_arrive_whole_and_in_order(server):
    """Whole text frames are read without websockets' parser until a frame it must read (a
    fragment, a frame cut by the read): pings between them are answered, and every message
    arrives, in order, before and after websockets takes over."""
    agent, raw, _ = await _agent_and_raw_user(server, "cyd", "mixed")

    def message(cmid: str) -> bytes:
        return json.dumps({"msg": f"m {cmid}", "type": 2, "cmid": cmid}).encode()

    long = json.dumps({"msg": "长" * 100, "type": 2, "cmid": "c-long"}, ensure_ascii=False).encode()
    assert 125 < len(long) < 65536  # a 16-bit length
    c = message("c-3")
    raw.sock.sendall(frame(TEXT, message("c-1")) + frame(PING, b"between") + frame(TEXT, long)
                     + frame(TEXT, c[:5], fin=False) + frame(CONT, c[5:]) + frame(TEXT, message("c-4")))
    cut = frame(TEXT, message("c-5"))
    raw.sock.sendall(cut[:7])
    await asyncio.sleep(0.2)
    raw.sock.sendall(cut[7:] + frame(PING, b"after") + frame(TEXT, message("c-6")))
    cmids = ["c-1", "c-long", "c-3", "c-4", "c-5", "c-6"]
    acks, pongs = [], []
    while len(acks) < len(cmids) or len(pongs) < 2:
        f = raw.read_frame()
        if f.opcode == PONG:
            pongs.append(f.payload)
        else:
            acks.append(json.loads(f.payload)["cmid"])
    assert sorted(acks) == sorted(cmids) and pongs == [b"between", b"after"]
    assert [(await agent.recv())["cmid"] for _ in cmids] == cmids
    raw.close()
    await agent.close()


@embedded_only
async def test_text_that_is_not_utf8_closes_1007_and_no_other_socket_notices(server):
    agent, raw, _ = await _agent_and_raw_user(server, "bob", "garbled")
    raw.sock.sendall(frame(TEXT, b'{"msg":"\xff\xfe","type":2,"cmid":"bad"}'))
    code, frames_before = raw.read_until_close()
    assert (code, frames_before) == (1007, 0)
    raw.close()
    await agent.send({"cmd": "ping"})
    assert (await agent.recv())["cmd"] == "pong"
    await agent.close()


@embedded_only
async def test_a_client_that_pings_and_never_reads_the_pongs_costs_bounded_memory(server):
    token, _ = server.user_token("pinger")
    raw = RawWs.connect(server.port, f"/ws?token={token}&v=2", rcvbuf=4096)
    before = rss_mib(server.proc.pid)
    ping = frame(0x9, b"p" * 125)  # each asks for a 127-byte pong
    sent = 0
    deadline = time.monotonic() + 10

    def flood() -> None:
        nonlocal sent
        raw.sock.settimeout(2)  # the server stops reading once its pongs back up
        try:
            while sent < 200_000 and time.monotonic() < deadline:
                raw.sock.sendall(ping * 100)
                sent += 100
        except OSError:
            pass

    thread = threading.Thread(target=flood)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.2)
    thread.join()
    grown = rss_mib(server.proc.pid) - before
    # 200 000 pongs would be 25 MiB if the server kept answering into its buffer.
    assert sent < 200_000, "the server never stopped reading a client that does not read"
    assert grown < 12, f"RSS grew {grown:.1f} MiB"
    other_token, _ = server.user_token("bystander")
    other = await WsClient.connect(server.ws_url, other_token)
    await other.send({"cmd": "ping"})
    assert (await other.recv())["cmd"] == "pong"
    await other.close()
    raw.close()
    await asyncio.sleep(0.3)
    assert httpx.get(server.base_url + "/healthz").json()["connections"] == 0
