"""The push port does not speak HTTP: a connection that starts like an HTTP request is closed
before any of its lines is pushed — the cross-protocol attack where a web page makes a browser POST
JSON lines to 127.0.0.1:5678 — while real backends on other connections carry on."""

from __future__ import annotations

import asyncio
import json

from tests.support.qrflow import PushClient, new_qr, open_page, push_port, sandbox_env


async def test_a_connection_that_starts_like_http_is_closed_without_pushing(deployment):
    srv = deployment.server(**sandbox_env())
    qr = new_qr(srv)
    page = await open_page(srv, qr)
    php = await PushClient.connect(push_port(srv))  # a real backend, connected throughout
    push = json.dumps({"uid": qr["uid"], "ticket": qr["ticket"], "forged": True})
    browser_post = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{push_port(srv)}\r\n"
                    "Content-Type: text/plain\r\nOrigin: https://evil.example\r\n"
                    f"Content-Length: {len(push) + 1}\r\n\r\n{push}\n")
    openings = [
        browser_post,
        f"GET /?{push} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"PUT /x HTTP/1.0\n{push}\n",
        f"Host: 127.0.0.1\r\n{push}\n",  # a request line lost, the headers still tell
        f"\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{push}\n",  # blank lines first; an HTTP/2 preface
    ]
    for opening in openings:
        r, w = await asyncio.open_connection("127.0.0.1", push_port(srv))
        w.write(opening.encode())
        await w.drain()
        reply = await asyncio.wait_for(r.read(), 5)  # EOF: closed by the server
        assert reply in (b"", b"fail\n"), (opening, reply)  # at most the blank line's `fail`
        w.close()
    assert await page.nothing_for(0.5) == []

    # JSON that merely contains HTTP-looking text is a push like any other.
    tricky = {"uid": qr["uid"], "ticket": qr["ticket"], "note": "GET / HTTP/1.1", "Host": "x"}
    assert await php.send(tricky) == "ok\n"
    assert await page.recv() == tricky
    late = await PushClient.connect(push_port(srv))
    assert await late.send({"uid": qr["uid"], "ticket": qr["ticket"], "first": 1}) == "ok\n"
    # An HTTP-looking line after the first one is just a line that is not JSON.
    await late.write(b"GET / HTTP/1.1\n")
    assert await late.reply() == "fail\n"
    assert await late.send({"uid": qr["uid"], "ticket": qr["ticket"], "second": 2}) == "ok\n"
    assert [f.get("first") or f.get("second") for f in await page.nothing_for(0.5)] == [1, 2]
    await late.close()
    await php.close()
