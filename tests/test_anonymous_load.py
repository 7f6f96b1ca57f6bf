"""Anonymous load, through real sockets on both backends: socket caps (in all, QR pages, per
address), the QR bind deadline, the absolute request deadline, and `GET /qrcode` per address.

Addresses are told apart the way a deployment behind nginx does: `KEFU_PROXIES_COUNT=1` and the
`X-Forwarded-For` the proxy sets."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from tests.support.qrflow import api_push, bind_frame, new_qr, sandbox_env
from tests.support.rawws import RawWs
from tests.support.wsclient import WsClient


async def from_addr(url: str, ip: str, token: str | None = None, **kw) -> WsClient:  # type: ignore[no-untyped-def]
    return await WsClient.connect(url, token, additional_headers={"X-Forwarded-For": ip}, **kw)


async def refused(url: str, ip: str, token: str | None = None) -> Response:
    """The handshake is answered with an HTTP error before any upgrade; returns that answer."""
    with pytest.raises(InvalidStatus) as e:
        await from_addr(url, ip, token, hello=False)
    return e.value.response


def assert_429(r: Response, message: str) -> None:
    assert r.status_code == 429, r
    assert r.headers["Retry-After"] == "5"
    assert json.loads(bytes(r.body)) == {"error": "rate_limited", "message": message}


async def eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, InvalidStatus):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_sockets_are_capped_per_address_for_qr_pages_and_in_all(deployment):
    srv = deployment.server(**sandbox_env(KEFU_PROXIES_COUNT="1", KEFU_MAX_SOCKETS_PER_IP="2",
                                          KEFU_MAX_QR_SOCKETS="5", KEFU_MAX_SOCKETS="7"))
    qr_url, qr = srv.ws_url + "/qr", new_qr(srv)
    token, _ = srv.user_token("capped")

    # Per address: two sockets, then 429 before the upgrade.
    bound = await from_addr(qr_url, "198.51.100.1", ping_interval=None)
    await bound.send(bind_frame(qr))
    assert await bound.recv() == bind_frame(qr)
    spare = await from_addr(qr_url, "198.51.100.1")
    assert_429(await refused(qr_url, "198.51.100.1"), "too many open sockets from your address")
    # IPv6 counts per /64: a host has all of its prefix's addresses.
    v6 = [await from_addr(qr_url, f"2001:db8:1:2::{i}") for i in (1, 2)]
    assert_429(await refused(qr_url, "2001:db8:1:2:ffff::3"), "too many open sockets from your address")
    other_net = await from_addr(qr_url, "2001:db8:1:3::1")
    # Five QR pages is the QR cap: a sixth address gets no page, but chat still has room ...
    assert_429(await refused(qr_url, "203.0.113.7"), "the server is at its socket limit; retry later")
    chats = [await from_addr(srv.ws_url, "203.0.113.7", token) for _ in range(2)]
    # ... up to seven sockets in all.
    full = "the server is at its socket limit; retry later"
    assert_429(await refused(srv.ws_url, "203.0.113.8", token), full)

    # Everything admitted carries on; plain HTTP is not affected by the socket caps.
    for chat in chats:
        await chat.send({"cmd": "ping"})
        assert (await chat.recv())["cmd"] == "pong"
    assert api_push(srv, {"uid": qr["uid"], "ticket": qr["ticket"], "n": 1}).json()["delivered"] is True
    assert (await bound.recv())["n"] == 1
    assert httpx.get(srv.base_url + "/healthz").json()["connections"] == 7

    # A socket that closes gives its place back; so does one whose client just vanished.
    await spare.close()
    await eventually(lambda: from_addr(qr_url, "198.51.100.1"))
    v6[0].conn.transport.abort()
    await eventually(lambda: from_addr(qr_url, "2001:db8:1:2::99"))
    await other_net.close()
    assert await bound.nothing_for(0.2) == []


async def test_unbound_qr_sockets_are_closed_at_the_bind_deadline(deployment):
    srv = deployment.server(**sandbox_env(KEFU_QR_BIND_TIMEOUT="1.5"))
    qr = new_qr(srv)
    token, _ = srv.user_token("chatting")
    chat = await WsClient.connect(srv.ws_url, token)
    t0 = time.monotonic()
    pinger = await WsClient.connect(srv.ws_url + "/qr", v2=True, ping_interval=0.2)
    guesser = await WsClient.connect(srv.ws_url + "/qr", v2=True, ping_interval=None)
    page = await WsClient.connect(srv.ws_url + "/qr", v2=True, ping_interval=None)

    async def keep_pinging() -> None:
        for _ in range(40):  # bounded: at most ~8 s
            await pinger.send({"cmd": "ping"})
            await asyncio.sleep(0.2)

    pinging = asyncio.create_task(keep_pinging())
    await guesser.send({**bind_frame(qr), "ticket": "not-its-ticket"})
    assert (await guesser.recv())["code"] == "bad_ticket"
    await page.send(bind_frame(qr))
    assert await page.recv() == bind_frame(qr)

    # Pings do not make an unbound socket bound: both unbound ones go with 4410 ...
    assert await pinger.closed(timeout=6) == (4410, "bind timeout")
    assert await guesser.closed(timeout=2) == (4410, "bind timeout")
    assert 1.4 < time.monotonic() - t0 < 4.5
    pinging.cancel()
    # ... while the bound page and the chat socket live on.
    await asyncio.sleep(0.5)
    assert api_push(srv, {"uid": qr["uid"], "ticket": qr["ticket"], "late": True}).json()["delivered"]
    assert (await page.recv())["late"] is True
    await chat.send({"cmd": "ping"})
    assert (await chat.recv())["cmd"] == "pong"


def trickle(port: int, data: bytes, step: float, limit: float = 10.0) -> tuple[float, bytes]:
    """Send `data` a byte every `step` seconds, reading whatever comes back; returns (seconds until
    the server ended the connection, what it answered). A server that never ends it fails."""
    s = socket.create_connection(("127.0.0.1", port))
    t0, got, i = time.monotonic(), b"", 0
    try:
        while time.monotonic() - t0 < limit:
            if select.select([s], [], [], step)[0]:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    return time.monotonic() - t0, got
                if not chunk:
                    return time.monotonic() - t0, got
                got += chunk
            if i < len(data):
                try:
                    s.sendall(data[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0, got
                i += 1
        raise AssertionError(f"the connection was not cut within {limit} s; got {got[:80]!r}")
    finally:
        s.close()


async def test_trickled_requests_are_cut_at_the_deadline_and_others_carry_on(deployment):
    srv = deployment.server(KEFU_REQUEST_TIMEOUT="2")
    token, _ = srv.user_token("patient")
    chat = await WsClient.connect(srv.ws_url, token)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    body = b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + b"{" + b" " * 199
    to_nowhere = b"POST /api/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + b" " * 200
    handshake = (f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    # A body sent in one go after its head: fine, even on a connection that waited before it.
    cuts = [asyncio.to_thread(trickle, srv.port, data, 0.05) for data in (head, handshake)]
    cuts.append(asyncio.to_thread(trickle, srv.port, body[:70], 0.01))  # the head, then silence
    cuts += [asyncio.to_thread(trickle, srv.port, data, 0.05) for data in (body, to_nowhere)]
    running = asyncio.gather(*cuts)

    # Meanwhile everyone else is served.
    for _ in range(5):
        assert httpx.get(srv.base_url + "/healthz").status_code == 200
        await chat.send({"cmd": "ping"})
        assert (await chat.recv())["cmd"] == "pong"
        await asyncio.sleep(0.3)
    results = await running
    for seconds, answer in results:
        # Cut at the deadline, 2 s after the first byte (slack for a busy machine).
        assert 1.9 < seconds < 3.5, (seconds, answer)
        assert answer == b"" or answer.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 404 ")), answer
    assert sum(a.startswith(b"HTTP/1.1 408 ") for _, a in results) >= 3

    # A slow request that makes it within the deadline is answered.
    slow = (b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n"
            b'{"code":"slow"}')
    s = socket.create_connection(("127.0.0.1", srv.port))
    for i in range(0, len(slow), 8):
        s.sendall(slow[i:i + 8])
        time.sleep(0.1)
    s.settimeout(5)
    assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    s.close()
    raw = RawWs.connect(srv.port, f"/ws?token={token}&v=2")
    assert raw.status == 101
    raw.close()


async def test_qrcode_is_limited_per_address(deployment):
    env = sandbox_env(KEFU_PROXIES_COUNT="1", KEFU_QRCODE_PER_MINUTE="4", KEFU_QRCODE_LIVE_PER_IP="3",
                      KEFU_QR_EXPIRE_SECONDS="2")
    srv = deployment.server(**env)

    def ask(ip: str, server=srv) -> httpx.Response:  # type: ignore[no-untyped-def]
        return httpx.get(server.base_url + "/qrcode", headers={"X-Forwarded-For": ip})

    codes = [ask("198.51.100.1") for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 200]
    live = ask("198.51.100.1")  # three live codes: wait until the oldest expires
    assert live.status_code == 429 and live.json()["error"] == "rate_limited"
    assert 1 <= int(live.headers["Retry-After"]) <= 2
    assert ask("198.51.100.2").status_code == 200  # another address is not affected
    # The codes it got are real: a page binds one.
    page = await WsClient.connect(srv.ws_url + "/qr", v2=False, ping_interval=None)
    await page.send(bind_frame(codes[0].json()))
    assert await page.recv() == bind_frame(codes[0].json())

    await asyncio.sleep(2.2)  # the three expired
    assert ask("198.51.100.1").status_code == 200  # the fourth in this minute
    await asyncio.sleep(2.2)
    per_minute = ask("198.51.100.1")  # no live code, but four this minute
    assert per_minute.status_code == 429
    assert 50 <= int(per_minute.headers["Retry-After"]) <= 60
    if deployment.backend == "redis_mysql":  # every process counts the same codes
        other = deployment.server(**{**env, "KEFU_PUSH_PORT": "0"})
        assert ask("198.51.100.1", other).status_code == 429
        assert ask("198.51.100.3", other).status_code == 200
