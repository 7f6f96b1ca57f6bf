"""The QR login page (`/qr-login`, web_qr/) in a real Chromium, against a real sandbox kefu."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, Page, expect

from tests.conftest import ARTIFACTS
from tests.support.qrflow import api_push, sandbox_env

XSS = "<img src=x onerror=alert(1)>"


async def open_page(browser: Browser, base_url: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 520, "height": 760}, device_scale_factor=2)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    await page.goto(base_url + "/qr-login")
    await expect(page.locator('#conn-status[data-state="online"]')).to_be_visible()
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
