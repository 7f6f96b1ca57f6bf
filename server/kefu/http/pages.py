"""The bundled pages (`/admin/`, `/qr-login/`) and the security headers of every response.

**Static files** come from a map of the directory's files made once at start: a request path is a
key in that map or a 404, and no part of it ever reaches the filesystem. So `%00`, `..`, an
over-long name or a symlink trick cannot produce a 500, a 503 or a file from elsewhere (Sanic's
own static handler answered 500 to `/admin/%00` and 503 to a name over 255 bytes).

**Headers.** The pages load only their own files — module scripts, one stylesheet, `fetch` and the
WebSocket to the same origin — and, in real mode, the QR image from WeChat's `showqrcode`; no inline
script or style anywhere. Their CSP says exactly that. Every other response (JSON, the sandbox QR
SVG) gets a CSP that allows nothing. All responses: no framing, no MIME sniffing, no Referer.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file

from kefu.config import Settings
from kefu.errors import NotFound

#: For JSON and anything that is not a page: load nothing, be framed nowhere.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def page_csp(img_origins: Iterable[str] = ()) -> str:
    """The pages' policy. `connect-src 'self'` covers ws:/wss: to the same host (CSP Level 3)."""
    img = " ".join(["'self'", *img_origins])
    return ("default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src {img}; connect-src 'self'; font-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def qr_image_origins(settings: Settings) -> list[str]:
    """Where the QR page's image comes from besides kefu: WeChat's showqrcode, in real mode."""
    if settings.wechat_mode != "real":
        return []
    parts = urlsplit(settings.wechat_mp_base)
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme and parts.netloc else []


def install_headers(app: Sanic) -> None:
    @app.on_response
    async def security_headers(_: Request, response: HTTPResponse) -> None:
        for name, value in BASE_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", API_CSP)


def _files(root: Path) -> dict[str, Path]:
    """Every servable file under `root` by its URL path (no dot-files, nothing outside root)."""
    out: dict[str, Path] = {}
    base = root.resolve()
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(base)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if not p.resolve().is_relative_to(base):
            continue  # a symlink out of the directory
        out[rel.as_posix()] = p
    return out


def serve_directory(app: Sanic, prefix: str, root: Path, name: str, csp: str) -> None:
    """Serve the files under `root` at `prefix` (which ends with "/"), `index.html` for a
    directory, with the page headers."""
    files = _files(root)
    headers = {"Content-Security-Policy": csp, "Cache-Control": "no-cache"}

    async def page(request: Request, rest: str = "") -> HTTPResponse:
        key = rest + "index.html" if rest == "" or rest.endswith("/") else rest
        path = files.get(key)
        if path is None:
            raise NotFound("no such file")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if mime.startswith("text/") or mime in ("application/javascript", "application/json"):
            mime += "; charset=utf-8"
        response = await file(path, mime_type=mime, request_headers=request.headers)
        response.headers.update(headers)  # a 304 too: a browser keeps the headers it revalidated
        return response

    app.add_route(page, prefix, methods=["GET", "HEAD"], name=f"{name}_index",
                  strict_slashes=True)
    app.add_route(page, prefix + "<rest:path>", methods=["GET", "HEAD"], name=name)
