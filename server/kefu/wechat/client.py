"""Async WeChat server-API client (wechat.md §0-§3, §6) on httpx.

One `WeChatClient` per WeChat app: the mini-program app logs users in (`code2session`), the Official
Account app makes login QR codes and sends OA messages. Each has its own access_token, so each client
owns its own `AccessTokenManager`; two clients may share one `httpx.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from kefu.errors import is_infrastructure
from kefu.wechat.errors import TOKEN_ERRCODES, WeChatError, WeChatUnavailable
from kefu.wechat.token_cache import WAIT, SharedTokens

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_MP_BASE = "https://mp.weixin.qq.com"
MAX_QR_EXPIRE_SECONDS = 2_592_000  # 30 days: the platform maximum for temporary QR codes
MAX_SCENE_STR = 64
REFRESH_MARGIN = 60.0  # refresh a token with less than this many seconds left (wechatpy does too)
#: The typing API's path. WeChat's docs disagree (wechat.md §6b): the mini-program's setTyping
#: page says this one, the newer service-account pages `/cgi-bin/message/custom/business/typing`.
TYPING_PATH = "/cgi-bin/message/custom/typing"
MAX_MEDIA_BYTES = 10 * 1024 * 1024  # what kefu reads of a temporary media download


@dataclass(frozen=True, slots=True)
class CodeSession:
    """The identity behind a `wx.login` code. `session_key` is dropped on purpose: it must never
    reach a client and kefu has no use for it."""

    openid: str
    unionid: str | None = None


@dataclass(frozen=True, slots=True)
class QrCode:
    """A temporary Official-Account QR code. `url` is the QR content (render it yourself or show
    the image at `qrcode_image_url(ticket)`)."""

    ticket: str
    expire_seconds: int
    url: str


class WeChatProvider(Protocol):
    """The surface shared by `WeChatClient` and the dev-only `SandboxWeChat`."""

    async def code2session(self, js_code: str) -> CodeSession: ...
    async def create_temp_qrcode(self, scene_str: str, expire_seconds: int) -> QrCode: ...
    def qrcode_image_url(self, ticket: str) -> str | None: ...
    async def send_custom_text(self, openid: str, content: str) -> None: ...
    async def send_custom_image(self, openid: str, media_id: str) -> None: ...
    async def upload_temp_image(self, data: bytes, mime: str) -> str: ...
    async def get_temp_media(self, media_id: str) -> bytes: ...
    async def set_typing(self, openid: str, typing: bool) -> None: ...
    async def send_subscribe(self, openid: str, template_id: str, page: str, data: dict[str, Any],
                             state: str) -> None: ...
    async def aclose(self) -> None: ...


def validate_qr_args(scene_str: str, expire_seconds: int) -> None:
    """Reject what WeChat would silently mangle: an out-of-range lifetime (it falls back to 60 s)
    or a scene string outside 1..64 characters."""
    if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= MAX_SCENE_STR:
        raise ValueError(f"scene_str must be 1..{MAX_SCENE_STR} characters")
    if (isinstance(expire_seconds, bool) or not isinstance(expire_seconds, int)
            or not 1 <= expire_seconds <= MAX_QR_EXPIRE_SECONDS):
        raise ValueError(f"expire_seconds must be an int in 1..{MAX_QR_EXPIRE_SECONDS}")


def _json_body(body: dict[str, Any]) -> bytes:
    # Raw UTF-8, not \\u escapes: some WeChat APIs show escaped text literally to the user.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def call_api(http: httpx.AsyncClient, method: str, url: str, *,
                   params: dict[str, str] | None = None, body: dict[str, Any] | None = None,
                   timeout: float | None = None, files: dict[str, Any] | None = None) -> dict[str, Any]:
    """One WeChat API round trip: map transport trouble to `WeChatUnavailable` and a non-zero
    `errcode` (missing = 0) to `WeChatError`. Messages never include the URL: it may hold a secret."""
    path = httpx.URL(url).path
    kwargs: dict[str, Any] = {"params": params}
    if body is not None:
        kwargs["content"] = _json_body(body)
        kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
    if files is not None:
        kwargs["files"] = files
    if timeout is not None:
        kwargs["timeout"] = timeout
    try:
        resp = await http.request(method, url, **kwargs)
    except httpx.HTTPError as e:
        raise WeChatUnavailable(f"{method} {path}: {type(e).__name__}") from None
    if resp.status_code != 200:
        raise WeChatUnavailable(f"{method} {path}: HTTP {resp.status_code}")
    try:
        data = resp.json()
    except ValueError:
        raise WeChatUnavailable(f"{method} {path}: response is not JSON") from None
    if not isinstance(data, dict):
        raise WeChatUnavailable(f"{method} {path}: response is not a JSON object")
    try:
        errcode = int(data.get("errcode") or 0)
    except (TypeError, ValueError):
        raise WeChatUnavailable(f"{method} {path}: bad errcode {data.get('errcode')!r}") from None
    if errcode != 0:
        raise WeChatError(errcode, str(data.get("errmsg", "")))
    return data


class AccessTokenManager:
    """Caches one app's access_token from `/cgi-bin/stable_token`.

    `stable_token` without `force_refresh` returns the same token to every caller while it is valid,
    so several kefu processes do not invalidate each other's tokens (the classic `/cgi-bin/token`
    would). Within a process, refreshes are single-flight: concurrent callers await one shared fetch
    (shielded, so a cancelled caller does not cancel it for the others, and one failure fails all
    waiters at once instead of each retrying in turn)."""

    def __init__(self, http: httpx.AsyncClient, api_base: str, appid: str, secret: str, *,
                 timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 shared: SharedTokens | None = None) -> None:
        self._http = http
        self.shared = shared
        self._url = api_base.rstrip("/") + "/cgi-bin/stable_token"
        self._appid = appid
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._inflight: asyncio.Task[str] | None = None
        self._expires_in = 0.0

    async def get(self) -> str:
        """A token with at least `REFRESH_MARGIN` seconds left, fetching one if needed."""
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        task = self._inflight
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._fetch())
            task.add_done_callback(_consume_exception)
            self._inflight = task
        return await asyncio.shield(task)

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token. With `token`, only if it is still the cached one, so callers that
        all saw the same stale token cause one refresh, not one each."""
        if token is None or token == self._token:
            self._token = None

    async def forget(self, token: str) -> None:
        """WeChat called `token` stale: forget it here and, if it is still the shared one, there."""
        self.invalidate(token)
        if self.shared is not None:
            try:
                await self.shared.drop(self._appid, token)
            except Exception as e:
                if not is_infrastructure(e):
                    raise
                log.warning("shared access_token store unreachable (%s)", e)

    async def aclose(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()

    def _keep(self, token: str, expires_in: float) -> str:
        # A short-lived token (expires_in may be below 7200) still gets cached for half its life.
        margin = min(REFRESH_MARGIN, expires_in / 2)
        self._token, self._refresh_at = token, self._clock() + expires_in - margin
        return token

    async def _fetch(self) -> str:
        if self.shared is None:
            return await self._fetch_stable()
        try:
            return await self._fetch_shared(self.shared)
        except Exception as e:
            if not is_infrastructure(e):
                raise
            log.warning("shared access_token store unreachable (%s); fetching it directly", e)
            return await self._fetch_stable()

    def _usable(self, got: tuple[str, float] | None) -> tuple[str, float] | None:
        """A stored token with more than the refresh margin left, as (token, seconds left)."""
        if got is None:
            return None
        left = got[1] - time.time()
        return (got[0], left) if left > REFRESH_MARGIN else None

    async def _fetch_shared(self, shared: SharedTokens) -> str:
        """Take the stored token; else refresh it under the lock, or wait for whoever holds it."""
        deadline = self._clock() + WAIT
        while True:
            hit = self._usable(await shared.get(self._appid))
            if hit is not None:
                return self._keep(*hit)
            lock = await shared.lock(self._appid)
            if lock is not None:
                try:
                    hit = self._usable(await shared.get(self._appid))  # refreshed meanwhile?
                    if hit is not None:
                        return self._keep(*hit)
                    token = await self._fetch_stable()
                    await shared.put(self._appid, token, time.time() + self._expires_in)
                    return token
                finally:
                    await shared.unlock(self._appid, lock)
            if self._clock() >= deadline:
                return await self._fetch_stable()  # the holder is gone or slow: harmless to fetch
            await asyncio.sleep(0.05)

    async def _fetch_stable(self) -> str:
        body = {"grant_type": "client_credential", "appid": self._appid, "secret": self._secret,
                "force_refresh": False}
        data = await call_api(self._http, "POST", self._url, body=body, timeout=self._timeout)
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise WeChatUnavailable("stable_token: response lacks access_token/expires_in")
        self._expires_in = float(expires_in)
        return self._keep(token, float(expires_in))


def _consume_exception(task: asyncio.Task[str]) -> None:
    if not task.cancelled():
        task.exception()  # mark retrieved: waiters saw it; no "never retrieved" warning


class WeChatClient:
    """Async client for one WeChat app (mini-program or Official Account)."""

    def __init__(self, appid: str, secret: str, *, api_base: str = DEFAULT_API_BASE,
                 mp_base: str = DEFAULT_MP_BASE, http: httpx.AsyncClient | None = None,
                 timeout: float = 5.0, shared: SharedTokens | None = None) -> None:
        self.appid = appid
        self._secret = secret
        self.api_base = api_base.rstrip("/")
        self.mp_base = mp_base.rstrip("/")
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self.tokens = AccessTokenManager(self._http, self.api_base, appid, secret, timeout=timeout,
                                         shared=shared)

    def __repr__(self) -> str:
        return f"WeChatClient(appid={self.appid!r}, api_base={self.api_base!r})"

    async def __aenter__(self) -> WeChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.tokens.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def code2session(self, js_code: str) -> CodeSession:
        """Exchange a `wx.login` code (single use, 5 min) for the user's openid/unionid.
        Invalid, reused or expired codes raise `WeChatError(40029)`."""
        if not js_code:
            raise ValueError("js_code must be non-empty")
        params = {"appid": self.appid, "secret": self._secret, "js_code": js_code,
                  "grant_type": "authorization_code"}
        data = await call_api(self._http, "GET", self.api_base + "/sns/jscode2session",
                              params=params, timeout=self._timeout)
        openid, unionid = data.get("openid"), data.get("unionid")
        if not isinstance(openid, str) or not openid:
            raise WeChatUnavailable("jscode2session: response lacks openid")
        return CodeSession(openid=openid, unionid=unionid if isinstance(unionid, str) and unionid
                           else None)

    async def create_temp_qrcode(self, scene_str: str, expire_seconds: int) -> QrCode:
        """A temporary string-scene QR code. Scanning it pushes a subscribe/SCAN event carrying
        `scene_str` and the ticket to the OA callback. Only verified Service Accounts may call this
        (else `WeChatError(48001)`)."""
        validate_qr_args(scene_str, expire_seconds)
        body = {"expire_seconds": expire_seconds, "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene_str}}}
        data = await self._call_with_token("POST", "/cgi-bin/qrcode/create", body=body)
        ticket, url = data.get("ticket"), data.get("url")
        if not isinstance(ticket, str) or not ticket:
            raise WeChatUnavailable("qrcode/create: response lacks ticket")
        expires = data.get("expire_seconds")
        return QrCode(ticket=ticket,
                      expire_seconds=expires if isinstance(expires, int) else expire_seconds,
                      url=url if isinstance(url, str) else "")

    def qrcode_image_url(self, ticket: str) -> str:
        """The JPEG for a ticket. Tickets are base64-ish (`+ / =`), so they must be URL-encoded."""
        return f"{self.mp_base}/cgi-bin/showqrcode?ticket={quote(ticket, safe='')}"

    async def send_custom_text(self, openid: str, content: str) -> None:
        """A customer-service text message; only inside the user's reply window (else 45015/45047)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        await self._call_with_token("POST", "/cgi-bin/message/custom/send", body=body)

    async def send_custom_image(self, openid: str, media_id: str) -> None:
        """A customer-service picture: a temporary media id from `upload_temp_image`."""
        body = {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
        await self._call_with_token("POST", "/cgi-bin/message/custom/send", body=body)

    async def upload_temp_image(self, data: bytes, mime: str) -> str:
        """Upload a picture as temporary media (valid 3 days); its media_id (wechat.md §6b)."""
        ext = {"image/png": "png", "image/gif": "gif"}.get(mime, "jpg")

        async def call(token: str) -> dict[str, Any]:
            return await call_api(self._http, "POST", self.api_base + "/cgi-bin/media/upload",
                                  params={"access_token": token, "type": "image"},
                                  files={"media": (f"image.{ext}", data, mime)}, timeout=self._timeout)
        data_ = await self._with_token(call)
        media_id = data_.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WeChatUnavailable("media/upload: response lacks media_id")
        return media_id

    async def get_temp_media(self, media_id: str) -> bytes:
        """The bytes of a temporary media (a picture a user sent); `WeChatError(40007)` for a bad id."""
        async def call(token: str) -> bytes:
            return await get_media(self._http, self.api_base + "/cgi-bin/media/get",
                                   {"access_token": token, "media_id": media_id}, self._timeout)
        return await self._with_token(call)

    async def set_typing(self, openid: str, typing: bool) -> None:
        """Show (or stop showing) "typing…" in the user's customer-service chat (wechat.md §6b)."""
        body = {"touser": openid, "command": "Typing" if typing else "CancelTyping"}
        await self._call_with_token("POST", TYPING_PATH, body=body)

    async def send_subscribe(self, openid: str, template_id: str, page: str, data: dict[str, Any],
                             state: str) -> None:
        """One subscribe message; each consent the user gave allows one (else 43101)."""
        body = {"touser": openid, "template_id": template_id, "page": page,
                "data": {k: {"value": v} for k, v in data.items()}, "miniprogram_state": state,
                "lang": "zh_CN"}
        await self._call_with_token("POST", "/cgi-bin/message/subscribe/send", body=body)

    async def _call_with_token(self, method: str, path: str, *,
                               body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call with the access_token; on a stale-token errcode refresh once and retry once."""
        url = self.api_base + path

        async def call(token: str) -> dict[str, Any]:
            return await call_api(self._http, method, url, params={"access_token": token},
                                  body=body, timeout=self._timeout)
        return await self._with_token(call)

    async def _with_token(self, call: Callable[[str], Awaitable[T]]) -> T:
        token = await self.tokens.get()
        try:
            return await call(token)
        except WeChatError as e:
            if e.errcode not in TOKEN_ERRCODES:
                raise
            await self.tokens.forget(token)
        return await call(await self.tokens.get())


async def get_media(http: httpx.AsyncClient, url: str, params: dict[str, str], timeout: float) -> bytes:
    """A download that is bytes on success and WeChat's JSON error otherwise."""
    try:
        async with http.stream("GET", url, params=params, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise WeChatUnavailable(f"GET /cgi-bin/media/get: HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_MEDIA_BYTES:
                    raise WeChatUnavailable("media/get: the media is larger than kefu accepts")
                chunks.append(chunk)
            ctype = resp.headers.get("content-type", "")
    except httpx.HTTPError as e:
        raise WeChatUnavailable(f"GET /cgi-bin/media/get: {type(e).__name__}") from None
    data = b"".join(chunks)
    if "json" in ctype or "text/plain" in ctype or data[:1] == b"{":
        try:
            err = json.loads(data)
        except ValueError:
            err = None
        if isinstance(err, dict):
            raise WeChatError(int(err.get("errcode") or 0) or 40007, str(err.get("errmsg", "")))
    return data
