"""The QR login page (`/qr-login`, web_qr/) in a real Chromium, against a real sandbox kefu.

The page speaks Chinese by default; these tests pick English (as a user would, with the toggle that
keeps `kefu.lang`) so that their text assertions read as the English catalog says."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.conftest import ARTIFACTS
from tests.support.qrflow import PushClient, api_push, bind_frame, push_port, sandbox_env

XSS = "<img src=x onerror=alert(1)>"
ENGLISH = "localStorage.setItem('kefu.lang', 'en');"


async def open_page(browser: Browser, base_url: str, english: bool = True) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 520, "height": 760}, device_scale_factor=2)
    if english:
        await page.add_init_script(ENGLISH)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    await page.goto(base_url + "/qr-login")
    # No socket until there is a code to bind (the server would close an unbound one, 4410).
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()
    return page, problems


async def test_click_scan_and_the_token_is_shown(deployment, browser):
    srv = deployment.server(**sandbox_env())
    page, problems = await open_page(browser, srv.base_url)
    await page.click("#get-qr")
    img = page.locator("#qr-img")
    await expect(img).to_be_visible()
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()  # the echo came back
    assert await img.evaluate("i => i.complete && i.naturalWidth > 100")
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"0[45]:\d\d"))
    await expect(page.locator("#simulate")).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / f"qr-login-waiting-{deployment.backend}.png"))

    # A backend push to this page shows up as text, never as markup.
    assert api_push(srv, {"broadcast": True, "note": XSS}).json()["delivered"] is True
    await expect(page.locator("#pushes li")).to_have_count(1)
    assert XSS in await page.locator("#pushes li").inner_text()

    await page.click("#simulate")
    await expect(page.locator("#result")).to_be_visible()
    await expect(page.locator("#whoami")).to_have_text("sbxoa_dev")
    token = await page.locator("#token").input_value()
    me = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["openid"] == "sbxoa_dev"
    await expect(page.locator("#qr-box")).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / f"qr-login-done-{deployment.backend}.png"))
    assert problems == []


async def test_an_expired_code_is_shown_expired_and_a_new_one_works(deployment, browser):
    srv = deployment.server(**sandbox_env(KEFU_QR_EXPIRE_SECONDS="3"))
    page, problems = await open_page(browser, srv.base_url)
    await page.click("#get-qr")
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    await expect(page.locator('#qr-box[data-state="expired"]')).to_be_visible(timeout=6000)
    await expect(page.locator("#countdown")).to_have_text("00:00")
    await expect(page.locator("#simulate")).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / f"qr-login-expired-{deployment.backend}.png"))

    await page.click("#refresh-qr")  # a fresh code, bound on the same socket
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    await page.click("#simulate")
    await expect(page.locator("#whoami")).to_have_text("sbxoa_dev")
    assert problems == []


# ---- pushes: the echo, the login and anything else ------------------------------------------------

LISTEN = """() => {
  window.__pushes = []; window.__logins = [];
  addEventListener('kefu:push', (e) => window.__pushes.push(e.detail));
  addEventListener('kefu:login', (e) => window.__logins.push(e.detail));
}"""


async def get_qr(page: Page) -> dict[str, Any]:
    """Click "Get QR code" and return what GET /qrcode answered the page."""
    async with page.expect_response(lambda r: r.url.endswith("/qrcode")) as info:
        await page.click("#get-qr")
    return await (await info.value).json()


async def test_a_uid_ticket_push_is_a_push_not_the_echo_and_a_token_push_logs_in(deployment, browser):
    srv = deployment.server(**sandbox_env())
    page, problems = await open_page(browser, srv.base_url)
    await page.evaluate(LISTEN)
    qr = await get_qr(page)
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()

    # What a PHP backend writes to the TCP port: uid + ticket + its own data. Not the echo.
    hello = {"uid": qr["uid"], "ticket": qr["ticket"], "hello": "world"}
    port = await PushClient.connect(push_port(srv))
    try:
        assert await port.send(hello) == "ok\n"
        await expect(page.locator("#pushes li")).to_have_count(1)
        assert json.loads(await page.locator("#pushes li").inner_text()) == hello
        assert await page.evaluate("window.__pushes") == [hello]
        await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
        # The bind frame's own keys plus one more: still a push.
        almost = {**bind_frame(qr), "extra": 1}
        assert api_push(srv, almost).json()["delivered"] is True
        await expect(page.locator("#pushes li")).to_have_count(2)

        # An older backend delivers the login itself: uid + ticket + a token it got for the user.
        login = httpx.post(srv.base_url + "/api/login", json={"code": "php-backend-user"}).json()
        token_push = {"uid": qr["uid"], "ticket": qr["ticket"], "token": login["token"]}
        assert await port.send(token_push) == "ok\n"
    finally:
        await port.close()
    await expect(page.locator("#result")).to_be_visible()
    await expect(page.locator("#whoami")).to_have_text(login["openid"])
    assert await page.locator("#token").input_value() == login["token"]
    assert await page.evaluate("window.__logins") == [token_push]
    assert len(await page.evaluate("window.__pushes")) == 2, "the login is not listed as a push"
    await page.screenshot(path=str(ARTIFACTS / f"qr-login-pushes-{deployment.backend}.png"))
    assert problems == []


# ---- frames and closes a real server does not send yet, injected between page and server ---------


class Proxy:
    """Every /ws/qr socket of a page, routed through Playwright to the real server. `refuse(frame)`
    may answer a bind instead of the server (return the error frame, or None to forward it)."""

    def __init__(self) -> None:
        self.routes: list[WebSocketRoute] = []
        self.binds: list[tuple[float, dict[str, Any]]] = []
        self.opened: list[float] = []
        self.refuse: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda f: None

    def handle(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.routes.append(ws)
        self.opened.append(time.monotonic())

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if "ticket" in frame:
                self.binds.append((time.monotonic(), frame))
                answer = self.refuse(frame)
                if answer is not None:
                    ws.send(json.dumps(answer))
                    return
            server.send(message)

        ws.on_message(from_page)

    async def install(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"/ws/qr$"), self.handle)


async def proxied_page(browser: Browser, base_url: str) -> tuple[Page, list[str], Proxy]:
    """The page with its sockets proxied, and its jitter pinned to the top (+25 %): backoffs of
    625 ms, 1.25 s, … so that timings tell "at once" from "after a backoff" on a busy machine."""
    page = await browser.new_page(viewport={"width": 520, "height": 760})
    await page.add_init_script("Math.random = () => 1;" + ENGLISH)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    proxy = Proxy()
    await proxy.install(page)
    await page.goto(base_url + "/qr-login")
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()
    return page, problems, proxy


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_a_bind_refused_with_retry_true_is_resent_with_backoff_but_not_with_false(deployment, browser):
    srv = deployment.server(**sandbox_env())
    page, problems, proxy = await proxied_page(browser, srv.base_url)
    busy = {"cmd": "error", "code": "unavailable", "message": "cannot check the ticket now", "retry": True}
    proxy.refuse = lambda f: busy if len(proxy.binds) <= 2 else None
    qr = await get_qr(page)
    await expect(page.locator("#qr-state")).to_have_text(re.compile("busy"))
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible(timeout=10000)
    assert [f for _, f in proxy.binds] == [bind_frame(qr)] * 3, "the same bind, three times"
    gaps = [b - a for (a, _), (b, _) in zip(proxy.binds, proxy.binds[1:], strict=False)]
    assert gaps[0] >= 0.6 and gaps[1] >= 1.2, f"backoff (625 ms, then 1.25 s): {gaps}"
    await expect(page.locator("#error")).to_be_hidden()

    # Not retryable: shown, and not sent again by itself.
    proxy.refuse = lambda f: {"cmd": "error", "code": "bad_frame", "message": "no such bind", "retry": False}
    before = len(proxy.binds)
    await page.click("#refresh-qr")
    await expect(page.locator("#error")).to_have_text("no such bind")
    await page.wait_for_timeout(1500)
    assert len(proxy.binds) == before + 1
    # An old server's error without the flag is not retried either.
    proxy.refuse = lambda f: {"cmd": "error", "code": "unavailable", "message": "old server"}
    await page.click("#refresh-qr")
    await expect(page.locator("#error")).to_have_text("old server")
    await page.wait_for_timeout(1500)
    assert len(proxy.binds) == before + 2
    assert problems == []


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_the_page_reconnects_and_rebinds_after_retryable_closes_but_not_after_4429(deployment, browser):
    srv = deployment.server(**sandbox_env())
    for code in (1001, 1011, 1012, 1013, 4408, 4503):
        page, problems, proxy = await proxied_page(browser, srv.base_url)
        await get_qr(page)
        await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
        closed_at = time.monotonic()
        await proxy.routes[-1].close(code=code, reason="test")
        await expect(page.locator('#qr-box[data-state="bound"]')).not_to_be_visible()
        await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible(timeout=10000)
        assert len(proxy.routes) == 2 and len(proxy.binds) == 2, f"{code}: one reconnect, bound again"
        waited = proxy.opened[1] - closed_at
        if code in (4408, 4503):
            assert waited < 0.45, f"{code}: at once, not after {waited:.2f} s"
        else:
            assert waited >= 0.6, f"{code}: after a backoff (625 ms), not {waited:.2f} s"
        assert problems == []
        await page.close()

    page, problems, proxy = await proxied_page(browser, srv.base_url)
    await get_qr(page)
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    await proxy.routes[-1].close(code=4429, reason="too many errors")
    await expect(page.locator("#conn-status .label")).to_have_text(re.compile("Refused"))
    await expect(page.locator("#error")).to_be_visible()
    await page.wait_for_timeout(2000)
    assert len(proxy.routes) == 1, "no reconnect after 4429"
    await page.click("#refresh-qr")  # the user asks again: a new socket, a new code
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    assert len(proxy.routes) == 2
    assert problems == []


# ---- language, and a socket only while there is a code --------------------------------------------


async def test_the_page_speaks_chinese_by_default_and_english_on_request(deployment, browser):
    srv = deployment.server(**sandbox_env())
    page, problems = await open_page(browser, srv.base_url, english=False)
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await expect(page.locator("h1")).to_have_text("微信扫码登录")
    await expect(page.locator("#get-qr")).to_have_text("获取二维码")
    await expect(page.locator("#conn-status .label")).to_have_text("未连接")
    await page.click("#get-qr")
    await expect(page.locator("#qr-state")).to_have_text("请用微信扫码登录")
    await page.screenshot(path=str(ARTIFACTS / f"qr-login-zh-{deployment.backend}.png"))
    # The toggle switches everything at once (the current states too) and is remembered.
    await page.click("#lang-toggle")
    await expect(page.locator("h1")).to_have_text("Log in with WeChat")
    await expect(page.locator("#qr-state")).to_have_text("Scan with WeChat to log in")
    await expect(page.locator("#conn-status .label")).to_have_text("Connected")
    await page.reload()
    await expect(page.locator("#get-qr")).to_have_text("Get QR code")
    await page.goto(srv.base_url + "/qr-login/?lang=zh-CN")
    await expect(page.locator("#get-qr")).to_have_text("获取二维码")
    assert problems == []


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
async def test_the_socket_opens_with_a_code_and_closes_when_the_code_is_gone(deployment, browser):
    srv = deployment.server(**sandbox_env(KEFU_QR_BIND_TIMEOUT="1", KEFU_QR_EXPIRE_SECONDS="4"))
    sockets: list[Any] = []
    page = await browser.new_page()
    await page.add_init_script(ENGLISH)
    page.on("websocket", lambda ws: sockets.append(ws))
    await page.goto(srv.base_url + "/qr-login")
    await page.wait_for_timeout(2500)  # well past the bind deadline: nothing was open to close
    assert sockets == []
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()

    await page.click("#get-qr")
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    assert len(sockets) == 1
    await expect(page.locator('#qr-box[data-state="expired"]')).to_be_visible(timeout=8000)
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()
    assert sockets[0].is_closed()
    await page.wait_for_timeout(1500)
    assert len(sockets) == 1, "no reconnect for an expired code"

    await page.click("#refresh-qr")  # a new code: a new socket, bound, and the login closes it
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    await page.click("#simulate")
    await expect(page.locator("#result")).to_be_visible()
    await expect(page.locator("#conn-status .label")).to_have_text("Done")
    assert len(sockets) == 2 and sockets[1].is_closed()
