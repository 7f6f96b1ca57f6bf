"""The PC console (`/admin`) in a real Chromium against a real kefu on Redis + MariaDB.

Users are real WebSocket clients; the agent is the page. Assertions are on what the agent sees.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import ARTIFACTS
from tests.support.wsclient import WsClient

AGENT, PASSWORD = "alice", "correct-horse-1"
XSS = "<img src=x onerror=alert(1)>"



@pytest.fixture
def srv(redis_deployment):  # type: ignore[no-untyped-def]
    s = redis_deployment.server()
    s.create_agent(AGENT, PASSWORD)
    return s


class Console:
    """One agent's browser tab, plus what it did that a user would notice (dialogs, script errors)."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def _dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def open(self) -> None:
        await self.page.goto(self.base_url + "/admin")

    async def sign_in(self, name: str = AGENT, password: str = PASSWORD) -> None:
        await self.page.fill("#login-name", name)
        await self.page.fill("#login-password", password)
        await self.page.click("#login-submit")

    async def signed_in(self) -> None:
        await self.open()
        await self.sign_in()
        await expect(self.page.locator("#console-view")).to_be_visible()
        await expect(self.online).to_be_visible()

    @property
    def online(self):  # type: ignore[no-untyped-def]
        return self.page.locator('#conn-status[data-state="online"]')

    def conversation(self, openid: str):  # type: ignore[no-untyped-def]
        return self.page.locator(f'.conversation[data-openid="{openid}"]')

    def bubbles(self, text: str | None = None):  # type: ignore[no-untyped-def]
        loc = self.page.locator("#message-list .message .bubble")
        return loc.filter(has_text=text) if text is not None else loc

    def message(self, text: str):  # type: ignore[no-untyped-def]
        return self.page.locator("#message-list .message").filter(
            has=self.page.locator(".bubble", has_text=text))

    async def reply(self, text: str) -> None:
        box = self.page.locator("#composer-input")
        await box.click()
        await box.fill(text)
        await box.press("Enter")

    async def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"console-{name}.png"
        await self.page.screenshot(path=str(path))
        return path


@pytest.fixture
async def console(browser: Browser, srv) -> AsyncIterator[Console]:  # type: ignore[no-untyped-def]
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    # These tests read the English option of the console (test_web_admin_team.py reads the Chinese).
    await ctx.add_init_script("localStorage.setItem('kefu.lang', 'en')")
    c = Console(await ctx.new_page(), srv.base_url)
    yield c
    await ctx.close()
    assert c.errors == [], f"script errors in the page: {c.errors}"


async def user(srv, code: str) -> tuple[WsClient, str]:  # type: ignore[no-untyped-def]
    token, openid = srv.user_token(code)
    return await WsClient.connect(srv.ws_url, token), openid


async def say(client: WsClient, text: str, cmid: str) -> dict:
    await client.send({"type": 2, "msg": text, "cmid": cmid})
    return await client.recv_until(lambda f: f.get("cmd") == "ack" and f.get("cmid") == cmid)


# --------------------------------------------------------------------------- sign-in and session

async def test_sign_in_errors_inline_and_the_session_survives_reload_until_sign_out(console, srv):
    page = console.page
    await console.open()
    assert page.url.endswith("/admin/")
    await expect(page.locator("#login-form")).to_be_visible()
    await console.shot("signin")

    await console.sign_in(password="wrong-password")
    await expect(page.locator("#login-error")).to_have_text("Wrong name or password.")
    await expect(page.locator("#console-view")).to_be_hidden()

    await console.sign_in()
    await expect(page.locator("#console-view")).to_be_visible()
    await expect(page.locator("#login-view")).to_be_hidden()
    await expect(page.locator("#agent-name")).to_have_text(AGENT)
    await expect(console.online).to_be_visible()
    await expect(page.locator("#conversation-empty")).to_be_visible()

    await page.reload()
    await expect(page.locator("#console-view")).to_be_visible()
    await expect(page.locator("#agent-name")).to_have_text(AGENT)
    await expect(console.online).to_be_visible()
    await expect(page.locator("#login-view")).to_be_hidden()

    token = await page.evaluate("JSON.parse(sessionStorage.getItem('kefu.session')).token")
    # The token is kept for this tab only (sessionStorage), never in localStorage.
    assert token not in "".join(await page.evaluate("Object.values(localStorage)"))
    await page.click("#logout")
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#console-view")).to_be_hidden()
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        for _ in range(50):  # sign-out revoked the token on the server, not only in the page
            r = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 401
    await page.reload()
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#console-view")).to_be_hidden()


async def test_a_token_revoked_elsewhere_closes_4401_and_returns_to_sign_in(console, srv):
    page = console.page
    await console.signed_in()
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('kefu.session')).token")
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        r = await http.post("/api/logout", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#login-notice")).to_contain_text("session has ended")
    await page.reload()  # the dead token was forgotten
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#login-notice")).to_be_hidden()


# --------------------------------------------------------------------------- the chat itself

async def test_live_list_unread_badge_open_read_receipt_and_reply(console, srv):
    page = console.page
    await console.signed_in()
    await page.click("#sound-toggle")
    await expect(page.locator("#sound-toggle")).to_have_attribute("aria-pressed", "true")
    # Count beeps: the console makes them with WebAudio oscillators.
    await page.evaluate("""() => {
        window.__beeps = 0;
        const orig = AudioContext.prototype.createOscillator;
        AudioContext.prototype.createOscillator = function () {
            window.__beeps += 1;
            return orig.call(this);
        };
    }""")
    await page.wait_for_timeout(1100)  # the toggle's own confirmation beep is rate-limited to 1/s

    alice_user, openid = await user(srv, "buyer-001")
    other, other_id = await user(srv, "buyer-002")
    await say(other, "请问周末发货吗？", "o-1")
    await say(alice_user, "你好，我的订单还没到 📦", "u-1")

    item = console.conversation(openid)
    await expect(item).to_be_visible()
    await expect(item.locator(".preview")).to_have_text("你好，我的订单还没到 📦")
    await expect(item.locator(".badge")).to_have_text("1")
    await expect(item.locator(".time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await expect(page).to_have_title("(2) kefu")
    # Sorted by latest activity: the newest message's conversation is on top.
    await expect(page.locator(".conversation").first).to_have_attribute("data-openid", openid)

    await say(alice_user, "订单号 20240611-8848", "u-2")
    await expect(item.locator(".badge")).to_have_text("2")
    await expect(page).to_have_title("(3) kefu")
    await say(other, "还有优惠券吗", "o-2")
    await expect(page.locator(".conversation").first).to_have_attribute("data-openid", other_id)
    await expect(console.conversation(other_id).locator(".badge")).to_have_text("2")
    await expect(page).to_have_title("(4) kefu")
    assert await page.evaluate("window.__beeps") >= 1
    await console.shot("list")

    await item.click()
    await expect(page.locator("#chat-title")).to_have_text(openid)
    await expect(console.bubbles()).to_have_text(["你好，我的订单还没到 📦", "订单号 20240611-8848"])
    await expect(item.locator(".badge")).to_be_hidden()
    await expect(page).to_have_title("(2) kefu")
    receipt = await alice_user.recv_until(lambda f: f.get("cmd") == "read")
    assert receipt["by"] == "agent" and receipt["openid"] == openid and receipt["upto"] > 0

    # A message in the open conversation shows up at once and raises no badge.
    await say(alice_user, "在吗？", "u-3")
    await expect(console.bubbles("在吗？")).to_have_count(1)
    await expect(item.locator(".badge")).to_be_hidden()
    await expect(page).to_have_title("(2) kefu")

    await console.reply("您好！已为您查询，包裹明天送达 🚚")
    got = await alice_user.recv_until(lambda f: f.get("from") == "agent" and "msg" in f)
    assert got["msg"] == "您好！已为您查询，包裹明天送达 🚚" and got["agent"] == AGENT
    sent = console.message("包裹明天送达")
    await expect(sent.locator(".status")).to_have_text("sent")
    await expect(page.locator("#composer-input")).to_have_value("")
    await expect(item.locator(".preview")).to_have_text("You: 您好！已为您查询，包裹明天送达 🚚")

    # Shift+Enter adds a line; Enter sends both lines as one message.
    box = page.locator("#composer-input")
    await box.click()
    await box.type("第一行 line one")
    await box.press("Shift+Enter")
    await box.type("第二行 line two")
    await expect(box).to_have_value("第一行 line one\n第二行 line two")
    await box.press("Enter")
    got = await alice_user.recv_until(lambda f: f.get("from") == "agent" and "msg" in f)
    assert got["msg"] == "第一行 line one\n第二行 line two"
    two_lines = console.message("第一行")
    await expect(two_lines.locator(".status")).to_have_text("sent")
    assert await two_lines.locator(".bubble").inner_text() == "第一行 line one\n第二行 line two"
    lines = await two_lines.locator(".bubble").evaluate(
        "e => Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight))")
    assert lines >= 2

    # The user reads the reply: the agent sees it.
    await alice_user.send({"cmd": "read"})
    await expect(two_lines.locator(".status")).to_have_text("read")

    await console.shot("conversation")
    for c in (alice_user, other):
        await c.close()


async def test_several_conversations_sorted_by_activity_with_their_own_badges(console, srv):
    """A working console with a few customers; its screenshot is the one the README shows."""
    page = console.page
    await console.signed_in()
    headphones, hp_id = await user(srv, "customer-headphones")
    refund, refund_id = await user(srv, "customer-refund")
    address, address_id = await user(srv, "customer-address")
    # bob, an admin who is away, takes no conversations but may answer any (auto-assignment gives
    # them all to alice, so her "mine" view lists all three).
    srv.cli("create-agent", "bob", "--admin", "--password", PASSWORD)
    colleague = await WsClient.connect(srv.ws_url, srv.agent_token("bob", PASSWORD))
    await colleague.send({"cmd": "presence", "status": "away"})
    await asyncio.sleep(0.5)

    await say(refund, "我想申请退货，衣服尺码不合适", "f-1")
    await colleague.send({"type": 1, "openid": refund_id, "msg": "好的，请在订单页点击「申请售后」",
                          "cmid": "b-1"})
    await colleague.recv_until(lambda f: f.get("cmd") == "ack")
    await say(headphones, "您好，请问这款耳机支持主动降噪吗？", "h-1")
    await say(headphones, "另外有白色的吗", "h-2")
    await say(address, "收货地址填错了，能改吗？🙏", "a-1")
    await say(address, "新地址：上海市浦东新区世纪大道 100 号", "a-2")
    await say(address, "麻烦尽快，谢谢！", "a-3")

    rows = page.locator(".conversation")
    await expect(rows).to_have_count(3)
    assert [await r.get_attribute("data-openid") for r in await rows.all()] == [address_id, hp_id, refund_id]
    await expect(console.conversation(address_id).locator(".badge")).to_have_text("3")
    await expect(console.conversation(hp_id).locator(".badge")).to_have_text("2")
    await expect(console.conversation(refund_id).locator(".badge")).to_have_text("1")
    await expect(console.conversation(refund_id).locator(".preview")).to_have_text(
        "bob: 好的，请在订单页点击「申请售后」")
    await expect(page).to_have_title("(6) kefu")

    await console.conversation(hp_id).click()
    await console.reply("您好！支持的，主动降噪深度最高 35dB 🎧")
    await expect(console.message("35dB").locator(".status")).to_have_text("sent")
    await say(headphones, "太好了，那白色呢？", "h-3")
    await console.reply("白色、黑色、雾蓝三种颜色都有现货。\n今天下单，明天就能发货 🚚")
    await expect(console.message("雾蓝").locator(".status")).to_have_text("sent")
    await expect(rows.first).to_have_attribute("data-openid", hp_id)  # the reply made it the latest
    await expect(page).to_have_title("(4) kefu")
    await page.locator("#composer-input").fill("好的，我帮您")

    await console.shot("overview")
    for c in (headphones, refund, address, colleague):
        await c.close()


async def test_message_text_is_never_markup_and_long_text_wraps(console, srv):
    page = console.page
    await console.signed_in()
    client, openid = await user(srv, "curious-user")
    long_word = "长" * 30 + "x" * 600
    await say(client, XSS, "x-1")
    await say(client, "<script>alert(2)</script><b>bold?</b>", "x-2")
    await say(client, long_word, "x-3")
    await say(client, "表情 😀🎉👍🏽 and 中文混排 mixed", "x-4")

    await console.conversation(openid).click()
    await expect(console.bubbles()).to_have_count(4)
    texts = await console.bubbles().all_inner_texts()
    assert texts == [XSS, "<script>alert(2)</script><b>bold?</b>", long_word,
                     "表情 😀🎉👍🏽 and 中文混排 mixed"]
    # Nothing was parsed as markup: no element came from the payloads, nothing ran.
    assert await page.locator("#message-list img, #message-list script, #message-list b").count() == 0
    assert await page.locator(".conversation img").count() == 0
    # The long message wraps inside the pane: nothing scrolls sideways.
    overflow = await page.locator("#messages").evaluate("e => e.scrollWidth - e.clientWidth")
    assert overflow <= 0

    # The agent's own reply with the payload is sent as text and shown as text.
    await console.reply(XSS)
    got = await client.recv_until(lambda f: f.get("from") == "agent" and "msg" in f)
    assert got["msg"] == XSS
    await expect(console.message("onerror").last.locator(".status")).to_have_text("sent")
    assert await page.locator("#message-list img").count() == 0
    await page.wait_for_timeout(300)
    assert console.dialogs == []
    await client.close()


async def test_infinite_scroll_loads_older_history_once(browser, redis_deployment):
    srv = redis_deployment.server(KEFU_RATE_PER_SEC="1000", KEFU_RATE_BURST="1000")
    srv.create_agent(AGENT, PASSWORD)
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    await ctx.add_init_script("localStorage.setItem('kefu.lang', 'en')")
    console = Console(await ctx.new_page(), srv.base_url)
    client, openid = await user(srv, "chatty")
    texts = [f"message {i:03d}" for i in range(1, 86)]
    for i, text in enumerate(texts):
        await client.send({"type": 2, "msg": text, "cmid": f"m{i}"})
    await client.recv_until(lambda f: f.get("cmd") == "ack" and f.get("cmid") == f"m{len(texts) - 1}", 20)

    await console.signed_in()
    await console.conversation(openid).click()
    await expect(console.bubbles("message 085")).to_be_visible()
    assert await console.bubbles("message 001").count() == 0  # only the newest page at first
    for _ in range(20):
        if await console.bubbles("message 001").count():
            break
        await page_scroll_top(console.page)
        await console.page.wait_for_timeout(300)
    await expect(console.page.locator("#history-status")).to_have_text("Beginning of the conversation")
    assert await console.bubbles().all_inner_texts() == texts
    await ctx.close()
    assert console.errors == []
    await client.close()


async def page_scroll_top(page: Page) -> None:
    await page.locator("#messages").evaluate("e => { e.scrollTop = 0; }")


# --------------------------------------------------------------------------- the network

async def test_reconnects_after_a_restart_and_shows_everything_exactly_once(console, srv):
    page = console.page
    await console.signed_in()
    client, openid = await user(srv, "patient-user")
    await say(client, "before restart", "r-1")
    await console.conversation(openid).click()
    await expect(console.bubbles("before restart")).to_have_count(1)
    await client.close()

    await asyncio.to_thread(srv.stop)
    banner = page.locator("#banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Connection lost")
    await expect(page.locator('#conn-status[data-state="online"]')).to_have_count(0)
    await console.shot("reconnecting")

    # A reply typed while the server is away waits, then offers a retry.
    await console.reply("稍等，我帮您查一下")
    pending = console.message("稍等")
    await expect(pending.locator(".status")).to_have_text("sending...")
    await expect(pending.locator(".status")).to_have_text("failed – retry", timeout=15_000)

    await asyncio.to_thread(srv.start)
    client, _ = await user(srv, "patient-user")
    await say(client, "while reconnecting", "r-2")
    bystander, bystander_id = await user(srv, "other-user")
    await say(bystander, "消息 while you were away", "b-1")

    await expect(banner).to_be_hidden(timeout=30_000)
    await expect(console.online).to_be_visible()
    await expect(console.bubbles("while reconnecting")).to_have_count(1)
    await expect(console.conversation(bystander_id).locator(".badge")).to_have_text("1")
    await expect(console.conversation(bystander_id).locator(".preview")).to_have_text(
        "消息 while you were away")

    await pending.locator("button.retry").click()
    await expect(pending.locator(".status")).to_have_text("sent")
    got = await client.recv_until(lambda f: f.get("from") == "agent" and "msg" in f)
    assert got["msg"] == "稍等，我帮您查一下"

    await say(client, "after reconnect", "r-3")
    await expect(console.bubbles("after reconnect")).to_have_count(1)
    await page.wait_for_timeout(500)  # let any late duplicate arrive before counting
    assert await console.bubbles().all_inner_texts() == [
        "before restart", "while reconnecting", "稍等，我帮您查一下", "after reconnect"]
    await expect(console.conversation(bystander_id).locator(".badge")).to_have_text("1")
    assert await page.locator(".conversation").count() == 2

    # The retried reply was stored once on the server too (same cmid, deduped).
    token = srv.agent_token(AGENT, PASSWORD)
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        r = await http.get(f"/api/conversations/{openid}/messages",
                           headers={"Authorization": f"Bearer {token}"})
    assert [m["msg"] for m in r.json()["messages"]].count("稍等，我帮您查一下") == 1
    assert [f for f in await client.nothing_for(0.5) if "msg" in f] == []
    for c in (client, bystander):
        await c.close()


async def test_a_reply_typed_while_offline_goes_out_once_when_back(console, srv):
    page = console.page
    await console.signed_in()
    client, openid = await user(srv, "offline-reply")
    await say(client, "有人吗", "q-1")
    await console.conversation(openid).click()
    await expect(console.bubbles("有人吗")).to_have_count(1)
    await client.close()

    await asyncio.to_thread(srv.stop)
    await expect(page.locator("#banner")).to_be_visible()
    await console.reply("在的，请讲")
    reply = console.message("在的，请讲")
    await expect(reply.locator(".status")).to_have_text("sending...")

    await asyncio.to_thread(srv.start)
    # "Reconnect now" skips the rest of the backoff (clicked from the page: the console may already be
    # reconnecting on its own, and then the button is hidden and the click does nothing).
    await page.evaluate("document.getElementById('banner-retry').click()")
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(reply.locator(".status")).to_have_text("sent")  # resent on reconnect, same cmid
    await expect(console.bubbles("在的，请讲")).to_have_count(1)

    client, _ = await user(srv, "offline-reply")
    await client.send({"cmd": "sync", "after": 0})
    synced = await client.recv_until(lambda f: f.get("cmd") == "sync")
    assert [m["msg"] for m in synced["messages"]] == ["有人吗", "在的，请讲"]
    await client.close()
