"""The team console in real Chromium: two or three agents' browser contexts against two kefu
processes on Redis + MariaDB, customers as real WebSocket clients. The UI is asserted in Chinese
(the default); screenshots of each main screen go to the artifacts directory."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import ARTIFACTS
from tests.support.wsclient import WsClient

PASSWORD = "correct-horse-1"
API_KEY = "team-console-key"


class Agent:
    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

    async def sign_in(self, name: str, password: str = PASSWORD) -> None:
        await self.page.goto(self.base_url + "/admin")
        await expect(self.page.locator("#login-submit")).to_have_text("登录")
        await self.page.fill("#login-name", name)
        await self.page.fill("#login-password", password)
        await self.page.click("#login-submit")
        await expect(self.page.locator('#conn-status[data-state="online"]')).to_be_visible()
        await expect(self.page.locator("#conn-status .label")).to_have_text("已连接")

    def item(self, openid: str):  # type: ignore[no-untyped-def]
        return self.page.locator(f'.conversation[data-openid="{openid}"]')

    async def view(self, name: str) -> None:
        await self.page.click(f'.view[data-view="{name}"]')

    async def open(self, openid: str) -> None:
        await self.item(openid).click()
        await expect(self.page.locator("#chat")).to_be_visible()

    async def type_and_send(self, text: str) -> None:
        box = self.page.locator("#composer-input")
        await box.fill(text)
        await box.press("Enter")

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(ARTIFACTS / f"team-{name}.png"))


@pytest.fixture
async def agents(browser: Browser) -> AsyncIterator:  # type: ignore[type-arg]
    contexts = []
    made: list[Agent] = []

    async def make(base_url: str) -> Agent:
        ctx = await browser.new_context(viewport={"width": 1400, "height": 820}, locale="zh-CN")
        contexts.append(ctx)
        a = Agent(await ctx.new_page(), base_url)
        made.append(a)
        return a

    yield make
    for ctx in contexts:
        await ctx.close()
    assert [e for a in made for e in a.errors] == []


def deploy(d):  # type: ignore[no-untyped-def]
    a = d.server(KEFU_API_KEY=API_KEY, KEFU_TYPING_INTERVAL="0.3")
    b = d.server(KEFU_API_KEY=API_KEY, KEFU_TYPING_INTERVAL="0.3")
    a.cli("create-agent", "root", "--admin", "--password", PASSWORD)
    return a, b


def admin_api(srv) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {srv.agent_token('root')}"})


async def customer(srv, code: str) -> tuple[WsClient, str, str]:  # type: ignore[no-untyped-def]
    token, openid = await asyncio.to_thread(srv.user_token, code)
    return await WsClient.connect(srv.ws_url, token), openid, token


async def say(ws: WsClient, text: str, cmid: str) -> None:
    await ws.send({"type": 2, "msg": text, "cmid": cmid})
    await ws.recv_until(lambda f: f.get("cmid") == cmid and f.get("cmd") == "ack")


async def test_a_team_shares_the_work_in_chinese(redis_deployment, agents):  # type: ignore[no-untyped-def]
    a, b = deploy(redis_deployment)
    with admin_api(a) as h:
        r = h.post("/api/admin/agents", json={"name": "alice", "password": PASSWORD, "max_open": 1})
        assert r.status_code == 201
        assert h.post("/api/admin/agents", json={"name": "bob", "password": PASSWORD}).status_code == 201
        r = h.post("/api/admin/canned", json={"shortcut": "hi", "body": "您好，很高兴为您服务！"})
        assert r.status_code == 201

    alice, bob = await agents(a.base_url), await agents(b.base_url)
    await alice.sign_in("alice")
    await bob.sign_in("bob")
    await expect(alice.page.locator('.view[data-view="mine"]')).to_contain_text("我的")
    await expect(alice.page.locator('#team .mate[data-agent="bob"] .mate-status')).to_have_text("在线")

    # A backend describes the customer; the customer writes and is assigned to alice (least loaded).
    u1, o1, t1 = await customer(a, "team-wang")
    r = httpx.put(f"{a.base_url}/api/profiles/{o1}", headers={"X-Api-Key": API_KEY},
                  json={"name": "王小明", "phone": "13800000000", "tags": ["VIP", "老客户"],
                        "attrs": {"订单号": "A20240611", "会员等级": "金卡"}})
    assert r.status_code == 200
    await say(u1, "你好，我的订单还没到", "w1")
    item = alice.item(o1)
    await expect(item.locator(".who")).to_have_text("王小明")
    await expect(item.locator(".state")).to_have_text("接待中：alice")
    await expect(alice.page.locator('.view[data-view="mine"] .count')).to_have_text("1")
    await alice.open(o1)
    side = alice.page.locator("#side")
    await expect(side.locator("#side-name")).to_have_text("王小明")
    await expect(side.locator("#side-fields")).to_contain_text("13800000000")
    await expect(side.locator("#side-fields")).to_contain_text("A20240611")
    await expect(side.locator(".tag")).to_have_text(["VIP", "老客户"])
    await expect(alice.page.locator("#chat-status")).to_have_text("接待中：alice")

    # Typing both ways.
    await u1.send({"cmd": "typing"})
    await expect(alice.page.locator("#typing")).to_have_text("王小明 正在输入…")
    await alice.page.locator("#composer-input").press_sequentially("稍等")
    typing = await u1.recv_until(lambda f: f.get("cmd") == "typing")
    assert typing["agent"] == "alice" and typing["from"] == "agent"

    # A canned reply inserted with `/`.
    box = alice.page.locator("#composer-input")
    await box.fill("")
    await box.press_sequentially("/h")
    await expect(alice.page.locator("#canned-menu .canned-item")).to_have_count(1)
    await alice.shot("canned")
    await box.press("Enter")
    await expect(box).to_have_value("您好，很高兴为您服务！")
    await box.press("Enter")
    got = await u1.recv_until(lambda f: f.get("from") == "agent" and "msg" in f)
    assert got["msg"] == "您好，很高兴为您服务！" and got["agent"] == "alice"

    # A private note: shown to agents, never to the customer (socket, sync, history).
    await alice.page.check("#note-mode")
    await alice.type_and_send("VIP 客户，优先处理")
    await expect(alice.page.locator("#message-list .message.note .bubble")).to_have_text("VIP 客户，优先处理")
    await expect(alice.page.locator("#message-list .event").first).to_contain_text("已分配给 alice")
    await alice.shot("conversation")
    frames = await u1.nothing_for(0.8)
    assert [f for f in frames if "VIP 客户" in str(f)] == []
    await u1.send({"cmd": "sync", "after": 0})
    synced = await u1.recv_until(lambda f: f.get("cmd") == "sync")
    assert "VIP 客户，优先处理" not in [m["msg"] for m in synced["messages"]]
    hist = httpx.get(f"{a.base_url}/api/conversations/{o1}/messages",
                     headers={"Authorization": f"Bearer {t1}"})
    assert "VIP 客户，优先处理" not in [m["msg"] for m in hist.json()["messages"]]

    # alice is at her limit: the next customer goes to bob (on the other node).
    u2, o2, _ = await customer(b, "team-li")
    await say(u2, "想换货", "l1")
    await expect(bob.item(o2).locator(".state")).to_have_text("接待中：bob")
    await expect(alice.item(o2)).to_have_count(0)

    # Both away: a third customer waits in the queue; both claim at once, one wins.
    for agent in (alice, bob):
        await agent.page.select_option("#presence", "away")
    await expect(alice.page.locator('#team .mate[data-agent="bob"] .mate-status')).to_have_text("离开")
    u3, o3, _ = await customer(a, "team-zhao")
    await say(u3, "有人在吗", "z1")
    for agent in (alice, bob):
        await agent.view("unassigned")
        await expect(agent.item(o3).locator(".state")).to_have_text("待接入")
        await agent.open(o3)
        await expect(agent.page.locator("#act-claim")).to_be_visible()
    await bob.shot("queue")
    click = "document.getElementById('act-claim').click()"
    await asyncio.gather(*(x.page.evaluate(click) for x in (alice, bob)))
    chips = [x.page.locator("#chat-status") for x in (alice, bob)]
    await expect(chips[0]).to_have_text(re.compile("接待中：(alice|bob)"))
    winner_name = (await chips[0].text_content() or "").split("：")[1]
    for chip in chips:
        await expect(chip).to_have_text(f"接待中：{winner_name}")
    winner, loser = (alice, bob) if winner_name == "alice" else (bob, alice)
    await expect(loser.page.locator("#composer-hint")).to_have_text(f"{winner_name} 已接入该会话")

    # Transfer with a note, then resolve, then the customer writes again: reopened.
    other = "bob" if winner_name == "alice" else "alice"
    await winner.page.click("#act-transfer")
    pick = ("(n) => [...document.querySelectorAll('#transfer-to option')]"
            ".find((o) => o.textContent.startsWith(n)).value")
    value = await winner.page.evaluate(pick, other)
    await winner.page.select_option("#transfer-to", value)
    await winner.page.fill("#transfer-note", "VIP order")
    await winner.page.click('#transfer-box button[type="submit"]')
    await expect(loser.page.locator("#chat-status")).to_have_text(f"接待中：{other}")
    await expect(loser.page.locator("#message-list .event").last).to_have_text(
        re.compile(f"{winner_name} 转接给 {other}：VIP order"))
    await loser.page.click("#act-resolve")
    await expect(loser.page.locator("#chat-status")).to_have_text("已解决")
    await loser.view("resolved")
    await expect(loser.item(o3)).to_be_visible()
    await say(u3, "还有个问题", "z2")
    await expect(loser.page.locator("#message-list .event").last).to_contain_text("会话已重新打开")
    await expect(loser.page.locator("#chat-status")).to_have_text("待接入")
    await loser.shot("resolved-reopened")


async def test_an_admin_adds_an_agent_and_disabling_them_sends_work_back(redis_deployment, agents):  # type: ignore[no-untyped-def]
    a, b = deploy(redis_deployment)
    root = await agents(a.base_url)
    await root.sign_in("root")
    await root.page.select_option("#presence", "away")  # root watches; carol takes the work
    await root.page.click("#admin-toggle")
    await expect(root.page.locator("#admin-view h2").first).to_have_text("客服账号")
    await root.page.fill("#new-agent-name", "carol")
    await root.page.fill("#new-agent-password", "carol-password-1")
    await root.page.fill("#new-agent-limit", "3")
    await root.page.click('#agent-form button[type="submit"]')
    await expect(root.page.locator("#admin-message")).to_have_text("已创建客服 carol")
    row = root.page.locator('#agents-body tr[data-agent="carol"]')
    await expect(row.locator(".state")).to_have_text("启用")
    await expect(row.locator("input.limit")).to_have_value("3")
    await root.shot("admin")

    carol = await agents(b.base_url)
    await carol.sign_in("carol", "carol-password-1")
    u, openid, _ = await customer(b, "team-qian")
    await say(u, "请问怎么退款", "q1")
    await expect(carol.item(openid).locator(".state")).to_have_text("接待中：carol")

    await row.locator("button.disable").click()
    await expect(row.locator(".state")).to_have_text("已停用")
    await expect(carol.page.locator("#login-view")).to_be_visible(timeout=10_000)
    await expect(carol.page.locator("#login-notice")).to_have_text("登录已失效，请重新登录。")
    await root.page.click("#admin-toggle")
    await root.view("unassigned")
    await expect(root.item(openid).locator(".state")).to_have_text("待接入")
    await root.shot("requeued")
