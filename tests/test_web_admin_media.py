"""The console in real Chromium with pictures and WeChat's customer-service channel: a customer who
writes through the contact button (the fake WeChat pushes to a real kefu in real mode), answered
from the console; pictures pasted and picked; thumbnails in the timeline and the larger view on
click; the reply window shown per conversation; an out-of-window reply marked with WeChat's reason.
The UI is asserted in Chinese (the default)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.conftest import ARTIFACTS, Deployment
from tests.fake_wechat import FakeWeChat
from tests.support import images
from tests.test_wechat_channel import MP_TOKEN, channel_env

PASSWORD = "correct-horse-1"

PASTE = """(b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], 'pasted.png', { type: 'image/png' }));
  const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
  document.getElementById('composer-input').dispatchEvent(ev);
  return ev.defaultPrevented;
}"""


LOADED = """([selector, width]) => {
  const all = document.querySelectorAll(selector);
  const img = all[all.length - 1];
  return !!img && img.complete && img.naturalWidth === width;
}"""


async def loaded(page, selector: str, width: int) -> None:  # type: ignore[no-untyped-def]
    """The last image matching `selector` has loaded at `width` — found afresh on every check,
    since the timeline may be re-rendered meanwhile (the conversation's assignment, say)."""
    await page.wait_for_function(LOADED, arg=[selector, width])


async def wait_for(pred, timeout: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_console_answers_a_wechat_customer_with_pictures(tmp_path: Path, browser: Browser) -> None:
    with FakeWeChat(require_window=True) as fw:
        d = Deployment("embedded", tmp_path, "console-media")
        try:
            srv = d.server(**channel_env(fw))
            srv.create_agent("alice", PASSWORD)
            ctx = await browser.new_context(viewport={"width": 1400, "height": 860}, locale="zh-CN")
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(srv.base_url + "/admin")
            await page.fill("#login-name", "alice")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-submit")
            await expect(page.locator("#conn-status .label")).to_have_text("已连接")

            # A customer writes in WeChat's own chat (the contact button): it lands in the console.
            openid = "o_console_wx"
            url = srv.base_url + "/wechat/mp"
            await fw.apush(url, MP_TOKEN, openid, "text", fmt="xml", Content="收到的包裹破了")
            item = page.locator(f'.conversation[data-openid="{openid}"]')
            await expect(item).to_be_visible()
            await item.click()
            last = page.locator("#message-list .message").last
            await expect(last.locator(".bubble")).to_have_text("收到的包裹破了")
            await expect(last.locator(".meta")).to_contain_text("微信客服")
            reach = page.locator("#chat-reach")
            await expect(reach).to_contain_text("可通过微信客服消息回复")
            await expect(reach).to_contain_text("剩余 5 条")

            # The customer sends a photo: a thumbnail in the timeline, the larger view on click.
            await fw.apush(url, MP_TOKEN, openid, "image", fmt="json", PicUrl="http://mmbiz/x",
                           MediaId=fw.add_media(images.photo_with_gps((1200, 900))))
            thumb = page.locator("#message-list .message.theirs img.thumb").last
            await expect(thumb).to_be_visible()
            await loaded(page, "#message-list .message.theirs img.thumb", 320)
            await thumb.click()
            await expect(page.locator("#lightbox")).to_be_visible()
            await loaded(page, "#lightbox-image", 1200)
            await page.screenshot(path=str(ARTIFACTS / "media-lightbox.png"))
            await page.keyboard.press("Escape")
            await expect(page.locator("#lightbox")).to_be_hidden()

            # A text reply: the user is not in the app, so it goes by customer-service message.
            await page.fill("#composer-input", "请问是哪一件？")
            await page.press("#composer-input", "Enter")
            mine = page.locator("#message-list .message.mine").last
            await expect(mine.locator(".delivery")).to_have_text("已通过微信客服消息送达")
            await wait_for(lambda: any(m.get("text", {}).get("content") == "请问是哪一件？"
                                       for m in fw.sent_messages))

            # A picture from the file picker, then one pasted into the composer.
            await page.set_input_files("#image-picker", files=[{
                "name": "label.png", "mimeType": "image/png", "buffer": images.png((300, 200))}])
            await expect(page.locator("#message-list .message.mine img.thumb")).to_have_count(1)
            await wait_for(lambda: len(fw.uploaded_media) == 1)
            red = base64.b64encode(images.png((120, 90), (200, 30, 30, 255))).decode()
            assert await page.evaluate(PASTE, red)
            await expect(page.locator("#message-list .message.mine img.thumb")).to_have_count(2)
            await wait_for(lambda: sum(m["msgtype"] == "image" for m in fw.sent_messages) == 2)
            await expect(page.locator("#message-list .message.mine .delivery").last).to_have_text(
                "已通过微信客服消息送达")
            await loaded(page, "#message-list .message.mine img.thumb", 120)
            await expect(reach).to_contain_text("剩余 2 条")
            await page.screenshot(path=str(ARTIFACTS / "media-console.png"))

            # WeChat's window is over (45015): the reply is marked, with the reason.
            fw.close_window(openid)
            await page.fill("#composer-input", "还在吗？")
            await page.press("#composer-input", "Enter")
            failed = page.locator("#message-list .message.mine").last.locator(".delivery")
            await expect(failed).to_have_text("未送达：超出微信客服消息回复时限（45015）")
            await expect(failed).to_have_attribute("data-status", "failed")
            await expect(reach).to_contain_text("用户离线")
            await page.screenshot(path=str(ARTIFACTS / "media-undelivered.png"))
            assert errors == []
            await ctx.close()
        finally:
            d.close()
