"""Web pages of another site receiving pushes, in Debian's Chromium: a page written like the
Workerman push page (the bare uid), one like the GatewayWorker page (`type: init`, `task_id`), and a
page using the SDK (/sdk/push.js) with a token its backend minted — pushed to by a backend written
the PHP way (docs/examples/: one persistent socket, JSON + "\\n", read the reply), with php-cli
when it is installed (scripts/test installs it), else the same bytes from Python."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import ARTIFACTS
from tests.support.pushpages import BIND_SECRET, push_env, token
from tests.support.qrflow import PushClient, api_push, push_port
from tests.support.server import ROOT, KefuServer

PHP = shutil.which("php")
EXAMPLES = ROOT / "docs" / "examples"

# ---- the other site: its pages and its backend's token endpoint --------------------------------

WORKERMAN = """<!doctype html><meta charset="utf-8"><title>workerman</title><pre id="log"></pre>
<script>
  // As Workerman's push demo: open, send the uid, show whatever comes.
  const q = new URLSearchParams(location.search);
  window.got = [];
  const ws = new WebSocket(q.get('ws'));
  ws.onopen = function () { ws.send(q.get('uid')); };
  ws.onmessage = function (e) {
    const data = JSON.parse(e.data);
    window.got.push(data);
    document.getElementById('log').textContent += e.data + '\\n';
  };
</script>"""

GATEWAY = """<!doctype html><meta charset="utf-8"><title>gatewayworker</title><pre id="log"></pre>
<script>
  // As a GatewayWorker page: init with the task id; the backend pushes the task's result.
  const q = new URLSearchParams(location.search);
  window.got = [];
  const ws = new WebSocket(q.get('ws'));
  ws.onopen = function () { ws.send(JSON.stringify({type: 'init', task_id: q.get('task')})); };
  ws.onmessage = function (e) {
    window.got.push(JSON.parse(e.data));
    document.getElementById('log').textContent += e.data + '\\n';
  };
</script>"""

SDK = """<!doctype html><meta charset="utf-8"><title>sdk</title>
<p>state: <b id="state">-</b></p><pre id="log"></pre>
<script type="module">
  const q = new URLSearchParams(location.search);
  const { KefuPush } = await import(q.get('sdk'));
  window.got = []; window.states = []; window.binds = 0;
  const push = new KefuPush({
    url: q.get('ws'),
    getToken: async () => { window.binds += 1; return (await fetch('/token?uid=' + q.get('uid'))).text(); },
    backoffMaxMs: 2000,
  });
  push.on('push', (data, meta) => {
    window.got.push({ data, meta });
    document.getElementById('log').textContent += JSON.stringify(data) + '\\n';
  });
  push.on('state', (s) => { window.states.push(s); document.getElementById('state').textContent = s; });
  push.start();
  window.push = push;
</script>"""


def mint_like_php(uid: str, groups: list[str]) -> str:
    """The backend's token endpoint: docs/examples/bind_token.php when php is here."""
    if PHP:
        out = subprocess.run([PHP, str(EXAMPLES / "bind_token.php"), uid, *groups], capture_output=True,
                             text=True, check=True, timeout=30,
                             env={**os.environ, "KEFU_PUSH_BIND_SECRET": BIND_SECRET})
        return out.stdout.strip()
    return token(uid, tuple(groups))


@contextlib.contextmanager
def other_site(groups: Callable[[str], list[str]]) -> Iterator[str]:
    """The site whose pages kefu pushes to, on a port of its own (another origin than kefu)."""
    pages = {"/workerman.html": WORKERMAN, "/gateway.html": GATEWAY, "/sdk.html": SDK}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/token":
                uid = parse_qs(url.query)["uid"][0]
                body, kind = mint_like_php(uid, groups(uid)).encode(), "text/plain"
            elif url.path in pages:
                body, kind = pages[url.path].encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def php_backend(srv: KefuServer, *pushes: dict[str, Any]) -> list[str]:
    """docs/examples/push_backend.php: one socket, a JSON line per push, a reply line each."""
    lines = [json.dumps(p, ensure_ascii=False) for p in pushes]
    if PHP:
        proc = await asyncio.create_subprocess_exec(
            PHP, str(EXAMPLES / "push_backend.php"), str(push_port(srv)), *lines,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        return out.decode().split()
    client = await PushClient.connect(push_port(srv))  # the same bytes, from Python
    try:
        return [(await client.send(p)).strip() for p in pushes]
    finally:
        await client.close()


async def open_site_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    await page.goto(url)
    return page, problems


async def got(page: Page, n: int) -> list[Any]:
    await page.wait_for_function(f"window.got && window.got.length >= {n}", timeout=10_000)
    return await page.evaluate("window.got")


def test_the_examples_are_real_php():
    if not PHP:
        pytest.skip("php-cli is not installed (scripts/test installs it); the PHP bytes are sent from Python")
    for f in ("push_backend.php", "bind_token.php"):
        r = subprocess.run([PHP, "-l", str(EXAMPLES / f)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr


async def test_workerman_and_gatewayworker_pages_receive_a_php_backends_pushes(deployment, browser):
    srv = deployment.server(**push_env(seed=True))
    ws = srv.ws_url + "/push"
    with other_site(lambda uid: []) as site:
        workerman, p1 = await open_site_page(browser, f"{site}/workerman.html?ws={ws}&uid=123")
        gateway, p2 = await open_site_page(browser, f"{site}/gateway.html?ws={ws}&task=task%20123456")
        for _ in range(50):  # both pages have sent their bind
            online = [api_push(srv, {"kefu": "online", "uid": "123"}).json()["online"],
                      api_push(srv, {"kefu": "online", "task_id": "task 123456"}).json()["online"]]
            if all(online):
                break
            await asyncio.sleep(0.1)
        replies = await php_backend(
            srv,
            {"uid": 123, "msg": "你有一条新订单", "order": 9},
            {"task_id": "task 123456", "status": "done", "url": "/report/9"},
            {"uid": 124, "msg": "nobody is bound to 124"},
        )
        assert replies == ["ok", "ok", "fail"]
        assert await got(workerman, 1) == [{"uid": 123, "msg": "你有一条新订单", "order": 9}]
        assert await got(gateway, 1) == [{"task_id": "task 123456", "status": "done", "url": "/report/9"}]
        await expect(workerman.locator("#log")).to_contain_text("你有一条新订单")
        await workerman.screenshot(path=str(ARTIFACTS / f"push-workerman-{deployment.backend}.png"))
        assert p1 == [] and p2 == []


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_seed_pages_are_refused_while_seed_binds_are_off(deployment, browser):
    srv = deployment.server(**push_env(KEFU_QR_BIND_TIMEOUT="2"))
    with other_site(lambda uid: []) as site:
        page, problems = await open_site_page(browser, f"{site}/workerman.html?ws={srv.ws_url}/push&uid=123")
        frames = await got(page, 1)
        assert frames[0]["cmd"] == "error" and frames[0]["code"] == "seed_binds_off"
        assert await php_backend(srv, {"uid": 123, "msg": "?"}) == ["fail"]
        assert problems == []


async def test_the_sdk_page_gets_its_uid_and_group_pushes_across_processes_and_rebinds_after_a_restart(
        redis_deployment, browser):
    near = redis_deployment.server(**push_env())  # the page's socket is here
    far = redis_deployment.server(**push_env())  # the backend talks to this one
    with other_site(lambda uid: ["news"]) as site:
        url = f"{site}/sdk.html?sdk={near.base_url}/sdk/push.js&ws={near.ws_url}/push&uid=42"
        page, problems = await open_site_page(browser, url)
        await expect(page.locator("#state")).to_have_text("bound")

        news = {"group": "news", "title": "上新"}
        assert await php_backend(far, {"uid": "42", "order": 1}, news) == ["ok", "ok"]
        assert await got(page, 2) == [{"data": {"uid": "42", "order": 1}, "meta": {"to": "uid"}},
                                      {"data": news, "meta": {"to": "group", "group": "news"}}]
        assert api_push(far, {"kefu": "count", "group": "news"}).json()["count"] == 1

        near.restart()  # the page's server goes away and comes back: the SDK binds again by itself
        await expect(page.locator("#state")).to_have_text("bound", timeout=20_000)
        states = await page.evaluate("window.states")
        assert "offline" in states and states[-1] == "bound"
        assert await page.evaluate("window.binds") >= 2, "a fresh token for the new bind"
        assert await php_backend(far, {"uid": "42", "order": 2}) == ["ok"]
        assert (await got(page, 3))[2]["data"]["order"] == 2
        await page.screenshot(path=str(ARTIFACTS / "push-sdk-page.png"))
        assert problems == []

