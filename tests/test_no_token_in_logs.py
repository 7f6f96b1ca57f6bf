"""No token in any log line, whatever fails: this test walks every failure path it can reach with
tokens in the URL, the headers and the frames — bad and deep frames, oversized and trickled
handshakes, Sanic's own handshake errors, sockets cut mid-handshake, a database that loses a table
under a running server, a QR login — then stops the server and searches its whole log (stdout and
stderr, everything Sanic, kefu and the libraries wrote) for any token, or a piece of one."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sqlite3
import time

import httpx
import pymysql

from tests.support import services
from tests.support.qrflow import bind_frame, new_qr, sandbox_env
from tests.support.rawws import RawWs, frame, handshake_request
from tests.support.wsclient import WsClient

FAKE = "fAkE" + secrets.token_urlsafe(30)  # never valid: must not be logged either


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def raw_send(port: int, data: bytes, read: bool = True, abort: bool = False) -> bytes:
    s = socket.create_connection(("127.0.0.1", port))
    try:
        s.sendall(data)
        if abort:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return b""
        s.settimeout(0.3)  # an answer comes at once; a keep-alive connection then just waits
        got = b""
        while read:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()


def break_messages_table(deployment) -> None:  # type: ignore[no-untyped-def]
    """Take `messages` away under the running server: its reads fail from then on."""
    if deployment.database:
        with pymysql.connect(host=services.MYSQL_HOST, port=services.MYSQL_PORT, user="root", password="",
                             database=deployment.database) as c, c.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute("RENAME TABLE messages TO messages_gone")
    else:
        c = sqlite3.connect(deployment.tmp / "data" / "kefu.sqlite3", timeout=10)
        try:
            c.execute("ALTER TABLE messages RENAME TO messages_gone")
            c.commit()
        finally:
            c.close()


def sanic_failures(port: int, base: str, tokens: list[str]) -> None:
    """Requests that fail in Sanic's layers (or kefu's HTTP edge) with a token in the URL, the
    headers or the body. Blocking: run in a thread, so the test's sockets keep their heartbeat."""
    for tok in tokens:
        q = f"/ws?token={tok}&v=2"
        raw_send(port, f"GET {q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # no upgrade
        raw_send(port, handshake_request(q).replace(b"Version: 13", b"Version: 8"))  # bad version
        raw_send(port, handshake_request(q).replace(b"Sec-WebSocket-Key", b"X-Nope"))
        raw_send(port, handshake_request(q, extra="X-Pad: " + "p" * 20_000 + "\r\n"))  # head too big
        raw_send(port, f"POST {q} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode())
        raw_send(port, f"GET {q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n".encode())  # never ends
        raw_send(port, handshake_request(q), read=False, abort=True)  # reset right after sending
        raw_send(port, handshake_request(q) + frame(1, b'{"cmd":"ping"}'), abort=True)
        raw_send(port, f"GET /ws%00?token={tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw_send(port, f"GET /admin/%00?token={tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw_send(port, f"GET /ws/qr?token={tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw_send(port, b"\x16\x03\x01\x02\x00" + tok.encode())  # TLS to a plain port, say
        headers = {"Authorization": f"Bearer {tok}"}
        httpx.get(base + f"/api/me?token={tok}")
        httpx.get(base + "/api/conversations?limit=abc", headers=headers)
        httpx.post(base + "/api/conversations/o_x/read", headers=headers, content=b"[1,2]")
        httpx.post(base + "/api/conversations/o_x/read", headers=headers,
                   content=b'{"upto":' + nested(5000).encode() + b"}")
        httpx.post(base + "/api/agent/login", json={"name": "nobody", "password": tok})
        httpx.post(base + "/api/login", json={"code": tok * 100})
        httpx.post(base + "/api/push", json={"openid": "o_x", "token": tok}, headers={"X-Api-Key": tok})
        RawWs.connect(port, f"/ws?token={tok}", rcvbuf=4096).close()
    # A handshake trickled past the request deadline, with the token in its request line.
    s = socket.create_connection(("127.0.0.1", port))
    for b in f"GET /ws?token={tokens[0]} HTTP/1.1\r\nHost: x\r\n":
        try:
            s.sendall(b.encode())
        except OSError:
            break
        time.sleep(0.08)
    s.close()


async def test_no_failure_puts_a_token_in_the_log(deployment):
    srv = deployment.server(**sandbox_env(KEFU_REQUEST_TIMEOUT="1", KEFU_MAX_FRAME_BYTES="65536",
                                          KEFU_QR_BIND_TIMEOUT="1"))
    srv.create_agent("logwatch")
    agent_token = srv.agent_token("logwatch")
    user_token, _ = srv.user_token("leaky")
    tokens = [agent_token, user_token, FAKE]
    base, port = srv.base_url, srv.port

    # ---- frames on live sockets: bad, deep, huge, binary, non-finite, surrogates, floods --------
    user = await WsClient.connect(srv.ws_url, user_token)
    for text in ["garbage", nested(10_000), '{"a":' * 3000 + "1" + "}" * 3000, '{"msg":NaN,"type":2}',
                 '{"msg":"\\ud800","type":2,"cmid":"s1"}', '{"cmd":"sync","after":1e999}',
                 '{"cmd":"read","upto":99999999999999999999}', f'{{"msg":"{user_token}","type":1}}']:
        await user.send(text)
        assert (await user.recv())["cmd"] == "error"
    await user.send({"msg": "a message that mentions no token", "type": 2, "cmid": "ok1"})
    await user.recv_until(lambda f: f.get("cmd") == "ack")
    await user.conn.send(b"\x00binary")
    assert (await user.recv())["code"] == "binary"
    for _ in range(10):
        await user.send("still garbage")
    assert (await user.closed())[0] == 4429
    big = await WsClient.connect(srv.ws_url, user_token)
    await big.send({"msg": "x" * 70_000, "type": 2})
    assert (await big.closed())[0] == 1009

    # ---- sockets that go wrong: fake tokens, logged-out tokens, cut connections -----------------
    fake = await WsClient.connect(srv.ws_url, FAKE, hello=False)
    assert (await fake.closed())[0] == 4401
    gone = await WsClient.connect(srv.ws_url, user_token)
    gone.conn.transport.abort()
    agent = await WsClient.connect(srv.ws_url, agent_token)
    for text in [nested(5000), "{", json.dumps({"type": 1, "openid": "no such", "msg": agent_token})]:
        await agent.send(text)
        assert (await agent.recv())["cmd"] == "error"
    await asyncio.to_thread(sanic_failures, port, base, tokens)

    # ---- a QR login: the token travels to the page, and nowhere else ---------------------------
    qr = new_qr(srv)
    page = await WsClient.connect(srv.ws_url + "/qr", v2=False, ping_interval=None)
    await page.send(nested(100))
    assert (await page.recv())["code"] == "bad_json"
    await page.send(bind_frame(qr))
    assert await page.recv() == bind_frame(qr)
    r = httpx.post(base + "/dev/simulate-scan", json={"ticket": qr["ticket"], "uid": qr["uid"]})
    assert r.status_code == 200
    login = await page.recv()
    tokens.append(login["token"])
    unbound = await WsClient.connect(srv.ws_url + "/qr", v2=False, ping_interval=None)
    assert (await unbound.closed(timeout=4))[0] == 4410
    out = await WsClient.connect(srv.ws_url, login["token"])
    assert httpx.post(base + "/api/logout", headers={"Authorization": f"Bearer {login['token']}"}).is_success
    assert (await out.closed())[0] == 4401

    # ---- the database loses a table under the running server ----------------------------------
    await asyncio.to_thread(break_messages_table, deployment)
    await agent.send({"cmd": "sync", "after": 0})
    assert (await agent.recv_until(lambda f: f.get("cmd") in ("sync", "error")))["cmd"] == "error"
    for tok in (agent_token, user_token):
        httpx.get(base + "/api/conversations/o_x/messages", headers={"Authorization": f"Bearer {tok}"})
        httpx.get(base + "/api/conversations", headers={"Authorization": f"Bearer {tok}"})
        httpx.get(base + "/api/me", headers={"Authorization": f"Bearer {tok}"})

    await asyncio.sleep(1.5)  # the request deadline cuts what is still open
    assert httpx.get(base + "/healthz").status_code == 200
    srv.stop()  # the shutdown's log lines count too
    log = srv.log_path.read_text(errors="replace")
    assert "Server Stopped" in log  # the whole log, to its last line ...
    for tok in tokens:  # ... holds no token, nor a piece of one
        for piece in (tok, tok[:12], tok[-12:]):
            assert piece not in log, (piece, [line for line in log.splitlines() if piece in line][:3])
