"""The pages' security headers, and odd static paths: through a real server on both backends, and
the pages in a real Chromium that enforces the CSP — they must work under it without one violation,
and refuse to be framed."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.fake_wechat import FakeWeChat
from tests.support.qrflow import api_push, new_qr, real_env, sandbox_env

PAGES = ["/admin/", "/admin/js/app.js", "/admin/js/client/connection.js", "/admin/css/app.css",
         "/qr-login/", "/qr-login/qr.js", "/qr-login/qr.css"]
ODD = ["/admin/%00", "/admin/a%00b.js", "/qr-login/%00", "/admin/..%2f..%2fetc%2fpasswd",
       "/admin/%2e%2e/%2e%2e/etc/passwd", "/admin/..%5c..%5cetc", "/admin/" + "a" * 300,
       "/admin/" + "%e4%b8%ad" * 100, "/admin/js/", "/admin/js", "/admin/%ff%fe", "/admin//etc/passwd",
       "/admin/.%2e/app.css", "/admin/index.html%00.png", "/qr-login/qr.js/", "/qr-image/" + "t" * 600,
       "/admin/%", "/admin/%zz", "/qr-login/" + "%2e%2e/" * 20 + "etc/passwd"]

VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fw:
        yield fw


def assert_base_headers(r: httpx.Response) -> None:
    assert r.headers["X-Content-Type-Options"] == "nosniff", r.url
    assert r.headers["X-Frame-Options"] == "DENY", r.url
    assert r.headers["Referrer-Policy"] == "no-referrer", r.url
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], r.url


def test_pages_send_a_strict_csp_and_every_response_the_base_headers(deployment):
    srv = deployment.server(**sandbox_env())
    for path in PAGES:
        r = httpx.get(srv.base_url + path)
        assert r.status_code == 200, path
        assert_base_headers(r)
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe" not in csp and "*" not in csp and "data:" not in csp
        kind = {"js": "text/javascript", "css": "text/css"}.get(path.rsplit(".", 1)[-1], "text/html")
        assert r.headers["Content-Type"].split(";")[0] in (kind, "application/javascript"), path
        # A revalidation (304) keeps the page's policy: browsers merge the headers it carries.
        again = httpx.get(srv.base_url + path, headers={"If-Modified-Since": r.headers["Last-Modified"]})
        assert again.status_code == 304 and again.headers["Content-Security-Policy"] == csp
    assert httpx.head(srv.base_url + "/admin/").status_code == 200

    # Everything else: a policy that allows nothing, and the same base headers.
    qr = new_qr(srv)
    for r in (httpx.get(srv.base_url + "/qr-image/" + quote(qr["ticket"], safe="")),
              httpx.get(srv.base_url + "/healthz"), httpx.get(srv.base_url + "/api/me"),
              httpx.get(srv.base_url + "/qrcode"), httpx.get(srv.base_url + "/nope"),
              api_push(srv, {"broadcast": True})):
        assert_base_headers(r)
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none';"), r.url
    svg = httpx.get(srv.base_url + "/qr-image/" + quote(qr["ticket"], safe=""))
    assert svg.status_code == 200 and svg.headers["Content-Type"] == "image/svg+xml"


def test_odd_static_paths_are_4xx_never_5xx_and_leave_no_trace(deployment):
    srv = deployment.server(**sandbox_env())
    with httpx.Client(base_url=srv.base_url) as client:
        for path in ODD:
            r = client.get(httpx.URL(srv.base_url + "/").copy_with(raw_path=path.encode()))
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
            assert r.json()["error"] in ("not_found", "bad_request"), path
            assert_base_headers(r)
        assert client.get("/admin/").status_code == 200  # and the pages still work
    srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unhandled error" not in log and "File not found" not in log


async def watch(page: Page) -> list[str]:
    problems: list[str] = []
    await page.add_init_script(VIOLATIONS)
    page.on("pageerror", lambda e: problems.append(f"error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    return problems


async def violations(page: Page, problems: list[str]) -> list[str]:
    return problems + await page.evaluate("window.__csp")


async def test_the_pages_work_under_their_csp_and_cannot_be_framed(deployment, browser: Browser):
    srv = deployment.server(**sandbox_env())
    srv.create_agent("csp-agent", "correct-horse-1")
    page = await browser.new_page()
    problems = await watch(page)

    # The console: sign in, the socket comes up, a reload restores the session.
    await page.goto(srv.base_url + "/admin/")
    await page.fill("#login-name", "csp-agent")
    await page.fill("#login-password", "correct-horse-1")
    await page.click("#login-submit")
    await expect(page.locator('#conn-status[data-state="online"]')).to_be_visible()
    await page.reload()  # revalidated files keep their policy
    await expect(page.locator('#conn-status[data-state="online"]')).to_be_visible()
    assert await violations(page, problems) == []

    # The QR page: a code (the sandbox's SVG), bound, scanned, logged in.
    await page.goto(srv.base_url + "/qr-login/")
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()
    await page.click("#get-qr")
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    assert await page.locator("#qr-img").evaluate("i => i.complete && i.naturalWidth > 100")
    await page.click("#simulate")
    await expect(page.locator("#result")).to_be_visible()
    assert await violations(page, problems) == []

    # Framed by another origin: the browser refuses to render either page inside it.
    for path in ("/admin/", "/qr-login/"):
        framing = await browser.new_page()
        await framing.set_content(f'<iframe id="f" src="{srv.base_url}{path}"></iframe>')
        await framing.wait_for_timeout(800)
        assert [f.url for f in framing.frames][1:] == ["chrome-error://chromewebdata/"], path
        await framing.close()
    await page.close()


async def test_the_real_mode_qr_page_loads_wechats_image_under_its_csp(deployment, browser, fake_wechat):
    srv = deployment.server(**real_env(fake_wechat))
    csp = httpx.get(srv.base_url + "/qr-login/").headers["Content-Security-Policy"]
    assert f"img-src 'self' {fake_wechat.mp_base};" in csp  # showqrcode's origin, and only that
    page = await browser.new_page()
    problems = await watch(page)
    await page.goto(srv.base_url + "/qr-login/")
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()
    async with page.expect_response(lambda r: r.url.startswith(fake_wechat.mp_base)) as shown:
        await page.click("#get-qr")
    assert (await shown.value).status == 200  # fetched, not blocked (the fake's JPEG is a stub)
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible()
    src = await page.locator("#qr-img").get_attribute("src") or ""
    assert src.startswith(fake_wechat.mp_base + "/cgi-bin/showqrcode")
    assert await violations(page, problems) == []
    await page.close()


async def test_an_idle_qr_page_survives_the_bind_deadline(deployment, browser):
    # The page opens its socket only once it has a code, so an idle page holds nothing the bind
    # deadline (4410) could close; a code asked for later binds and logs in.
    srv = deployment.server(**sandbox_env(KEFU_QR_BIND_TIMEOUT="1"))
    page = await browser.new_page()
    problems = await watch(page)
    opened: list[int] = []
    page.on("websocket", lambda ws: opened.append(1))
    await page.goto(srv.base_url + "/qr-login/")
    await expect(page.locator('#conn-status[data-state="idle"]')).to_be_visible()
    await page.wait_for_timeout(3000)
    assert opened == []  # no socket while there is nothing to bind
    await page.click("#get-qr")
    await expect(page.locator('#qr-box[data-state="bound"]')).to_be_visible(timeout=20_000)
    await page.wait_for_timeout(1500)  # bound: past the deadline, still there
    await page.click("#simulate")
    await expect(page.locator("#result")).to_be_visible()
    assert await violations(page, problems) == []
    await page.close()
