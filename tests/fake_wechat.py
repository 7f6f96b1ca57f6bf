"""A local fake of the WeChat server APIs (wechat.md §8), plus a callback driver.

Two loopback HTTP servers run in background threads: `api_base` (api.weixin.qq.com) and `mp_base`
(mp.weixin.qq.com, only `/cgi-bin/showqrcode`), so a client that mixes up the hosts fails. Works for
in-process clients and for a kefu server in a subprocess alike.

    with FakeWeChat() as fw:
        fw.register_code("c1", "o_user1")
        client = WeChatClient(MP_APPID, MP_SECRET, api_base=fw.api_base, mp_base=fw.mp_base)

Errors follow WeChat: HTTP 200 with `errcode`; successes of token/code2session carry no `errcode`.
Where the real error code is undocumented, the fake answers 47001 with an explanatory `errmsg`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from kefu.wechat.callback import build_scan_xml, parse_xml_root, sha1_signature
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import CallbackError
from kefu.wechat.mp_push import ENTER_EVENT, build_envelope, build_push, push_fields

MP_APPID, MP_SECRET = "wxfake0mp0000001", "mp-secret-0000000000000000000001"
MP_ORIGINAL_ID = "gh_fakemp000001"
MESSAGE_WINDOW, MESSAGE_QUOTA = 48 * 3600.0, 5  # wechat.md §6: after a user's message
ENTER_WINDOW, ENTER_QUOTA = 60.0, 2  # after the user enters the customer-service chat
TYPING_PATHS = ("/cgi-bin/message/custom/typing", "/cgi-bin/message/custom/business/typing")
OA_APPID, OA_SECRET = "wxfake0oa0000001", "oa-secret-0000000000000000000001"
OA_ORIGINAL_ID = "gh_fake00000001"
MAX_QR_EXPIRE = 2_592_000
QR_ACTIONS = {"QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"}
# Smallest thing that looks like a JPEG to a browser sniffing magic bytes.
FAKE_JPEG = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
             b"fake-qr-image\xff\xd9")


@dataclass
class Recorded:
    server: str  # "api" or "mp"
    method: str
    path: str
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CreatedQr:
    ticket: str
    appid: str
    action_name: str
    scene: str  # scene_str, or str(scene_id)
    expire_seconds: int | None  # None for permanent codes
    expires_at: float | None
    url: str

    def live(self) -> bool:
        return self.expires_at is None or time.time() < self.expires_at


@dataclass
class _App:
    secret: str
    verified: bool = True
    stable_token: str | None = None
    expire_next: bool = False


@dataclass
class _Token:
    appid: str
    kind: str  # "stable" or "classic"
    expires_at: float
    expired: bool = False

    def valid(self) -> bool:
        return not self.expired and time.time() < self.expires_at


@dataclass
class _Code:
    appid: str
    openid: str
    unionid: str | None
    expires_at: float
    used: bool = False


@dataclass
class _Failure:
    errcode: int
    errmsg: str
    path: str | None
    remaining: int


class _ApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def _rid(errmsg: str) -> str:
    return f"{errmsg} rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}"


def _ticket() -> str:
    body = base64.b64encode(secrets.token_bytes(45)).decode()
    return f"gQH{body[:20]}+{body[20:40]}/{body[40:]}=="


class FakeWeChat:
    """The fake: knobs to steer it, records to assert on. Thread-safe; start/stop or `with`."""

    def __init__(self, apps: dict[str, str] | None = None, *, token_expires_in: int = 7200,
                 require_window: bool = False) -> None:
        self._lock = threading.RLock()
        self._apps = {a: _App(s) for a, s in
                      (apps if apps is not None else {MP_APPID: MP_SECRET, OA_APPID: OA_SECRET}).items()}
        self.token_expires_in = token_expires_in
        self.require_window = require_window
        self.oa_original_id = OA_ORIGINAL_ID
        self.requests: list[Recorded] = []
        self.created_qrcodes: list[CreatedQr] = []
        self.sent_messages: list[dict[str, Any]] = []
        self._tokens: dict[str, _Token] = {}
        self._codes: dict[str, _Code] = {}
        self._failures: list[_Failure] = []
        self._delays: dict[str, float] = {}
        self._windows: dict[str, tuple[int, float]] = {}  # openid -> (messages left, until)
        self._last_action: dict[str, float] = {}  # openid -> when the user last wrote or entered
        self._typing_until: dict[str, float] = {}
        self._media: dict[str, tuple[bytes, str]] = {}  # media_id -> (bytes, type)
        self.uploaded_media: list[tuple[str, bytes, str]] = []
        self.typing: list[dict[str, Any]] = []
        self._consents: dict[tuple[str, str], int] = {}
        self._msg_ids = iter(range(24_000_000_000_000_000, 2**63))
        self._servers: list[_Server] = []
        self.api_base = self.mp_base = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeWeChat:
        for role in ("api", "mp"):
            srv = _Server(("127.0.0.1", 0), _Handler)
            srv.fake, srv.role = self, role  # type: ignore[attr-defined]
            threading.Thread(target=srv.serve_forever, args=(0.05,), name=f"fake-wechat-{role}",
                             daemon=True).start()
            self._servers.append(srv)
        self.api_base = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.mp_base = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers.clear()

    def __enter__(self) -> FakeWeChat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs -----------------------------------------------------------------------------

    def add_app(self, appid: str, secret: str, *, verified: bool = True) -> None:
        with self._lock:
            self._apps[appid] = _App(secret, verified)

    def set_verified(self, appid: str, verified: bool) -> None:
        """An unverified account gets 48001 from qrcode/create."""
        with self._lock:
            self._apps[appid].verified = verified

    def register_code(self, code: str, openid: str, unionid: str | None = None, *,
                      appid: str = MP_APPID, ttl: float = 300.0) -> None:
        """A `wx.login` code: single use, `ttl` seconds, valid only for `appid`."""
        with self._lock:
            self._codes[code] = _Code(appid, openid, unionid, time.time() + ttl)

    def expire_tokens(self, appid: str | None = None) -> None:
        """Every token issued so far (for `appid`, or all) now answers 42001."""
        with self._lock:
            for tok in self._tokens.values():
                if appid is None or tok.appid == appid:
                    tok.expired = True

    def expire_next_token(self, appid: str | None = None) -> None:
        """The next token issued is already expired, so its first use gets 42001 once."""
        with self._lock:
            for a, app in self._apps.items():
                if appid is None or a == appid:
                    app.expire_next = True

    def fail_next(self, errcode: int, *, path: str | None = None, times: int = 1,
                  errmsg: str = "injected error") -> None:
        """The next `times` API requests (to `path`, or any) answer `errcode`, e.g. -1 busy."""
        with self._lock:
            self._failures.append(_Failure(errcode, errmsg, path, times))

    def busy_next(self, *, path: str | None = None, times: int = 1) -> None:
        self.fail_next(-1, path=path, times=times, errmsg="system error")

    def set_delay(self, path: str, seconds: float) -> None:
        """Sleep before answering `path` (to overlap concurrent callers or to force timeouts)."""
        with self._lock:
            self._delays[path] = seconds

    def open_window(self, openid: str, messages: int = MESSAGE_QUOTA,
                    seconds: float = MESSAGE_WINDOW) -> None:
        """Allow `messages` custom messages to `openid` within `seconds` (enforced only with
        `require_window`); what a user's message (or entry) does, and each resets the count."""
        with self._lock:
            self._windows[openid] = (messages, time.time() + seconds)
            self._last_action[openid] = time.time()

    def close_window(self, openid: str) -> None:
        """The window ends early (in WeChat's view): the next custom message answers 45015."""
        with self._lock:
            self._windows.pop(openid, None)

    def add_media(self, data: bytes, mime: str = "image/jpeg") -> str:
        """A temporary media WeChat holds (a picture a user sent): its media_id for `media/get`."""
        media_id = "MEDIA_" + secrets.token_urlsafe(24)
        with self._lock:
            self._media[media_id] = (data, mime)
        return media_id

    def grant_subscribe(self, openid: str, template_id: str, times: int = 1) -> None:
        with self._lock:
            key = (openid, template_id)
            self._consents[key] = self._consents.get(key, 0) + times

    # -- records ---------------------------------------------------------------------------

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def token_fetches(self) -> int:
        """Requests to either token endpoint (each one a fetch from the client's point of view)."""
        return len(self.requests_to("/cgi-bin/stable_token")) + len(self.requests_to("/cgi-bin/token"))

    def qrcode(self, ticket: str) -> CreatedQr:
        with self._lock:
            for qr in self.created_qrcodes:
                if qr.ticket == ticket:
                    return qr
        raise KeyError(ticket)

    def scan_xml(self, ticket: str, from_user: str, *, subscribe: bool = True,
                 create_time: int | None = None) -> bytes:
        """The push WeChat sends when `from_user` (an OA openid) scans `ticket`."""
        qr = self.qrcode(ticket)
        return build_scan_xml(to_user=self.oa_original_id, from_user=from_user, scene=qr.scene,
                              ticket=ticket, subscribe=subscribe, create_time=create_time)

    async def apush(self, url: str, token: str, openid: str, msg_type: str = "text", *, fmt: str = "json",
                    crypto: WeChatCrypto | None = None, attempts: int = 3, timeout: float = 5.0,
                    repeat: int = 0, create_time: int | None = None,
                    **fields: str) -> tuple[Delivery, dict[str, Any]]:
        """What WeChat does when `openid` writes (or enters) in the mini-program's customer-service
        chat: opens the reply window that opens (5 messages in 48 h; 2 in a minute on entry) and
        POSTs the push to kefu's message-push URL, JSON or XML, plain or safe mode (`crypto`),
        retrying like WeChat; `repeat` re-sends an accepted push that many times more (WeChat
        re-sends what it thinks went unanswered)."""
        with self._lock:
            msg_id = None if msg_type == "event" else next(self._msg_ids)
            if msg_type != "event":
                self._windows[openid] = (MESSAGE_QUOTA, time.time() + MESSAGE_WINDOW)
            elif fields.get("Event") == ENTER_EVENT:
                left, until = self._windows.get(openid, (0, 0.0))
                if not (until > time.time() + ENTER_WINDOW and left >= ENTER_QUOTA):
                    self._windows[openid] = (ENTER_QUOTA, time.time() + ENTER_WINDOW)
            self._last_action[openid] = time.time()
        push = push_fields(msg_type, to_user=MP_ORIGINAL_ID, from_user=openid, create_time=create_time,
                           msg_id=msg_id, **fields)
        delivery = await adeliver_push(url, token, build_push(push, fmt), fmt=fmt, crypto=crypto,
                                       attempts=attempts, timeout=timeout, repeat=repeat)
        return delivery, push

    async def adeliver_event(self, url: str, token: str, xml: bytes, **kw: Any) -> Delivery:
        return await adeliver_event(url, token, xml, **kw)

    def deliver_event(self, url: str, token: str, xml: bytes, **kw: Any) -> Delivery:
        return deliver_event(url, token, xml, **kw)

    # -- request handling (called from server threads) -------------------------------------

    def _handle(self, role: str, method: str, path: str, query: dict[str, str],
                body: bytes, ctype: str = "") -> tuple[int, str, bytes]:
        with self._lock:
            self.requests.append(Recorded(role, method, path, query, body))
            delay = self._delays.get(path, 0.0)
        if delay:
            time.sleep(delay)
        if role == "mp":
            return self._showqrcode(method, path, query)
        if method == "GET" and path == "/cgi-bin/media/get":
            return self._media_get(query)
        with self._lock:
            try:
                if method == "POST" and path == "/cgi-bin/media/upload":
                    data = self._failure(path) or self.upload_media(query, ctype, body)
                else:
                    data = self._api(method, path, query, body)
            except _ApiError as e:
                data = {"errcode": e.errcode, "errmsg": _rid(e.errmsg)}
        if data is None:
            return 404, "text/html", b"<html><body>404 Not Found</body></html>"
        payload = json.dumps(data, ensure_ascii=False).encode()
        return 200, "application/json; encoding=utf-8", payload

    def _showqrcode(self, method: str, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        if method == "GET" and path == "/cgi-bin/showqrcode":
            with self._lock:
                live = any(q.ticket == query.get("ticket") and q.live() for q in self.created_qrcodes)
            if live:
                return 200, "image/jpeg", FAKE_JPEG
        return 404, "text/html", b"<html><body>404 Not Found</body></html>"

    def _api(self, method: str, path: str, query: dict[str, str],
             body: bytes) -> dict[str, Any] | None:
        routes = {
            ("GET", "/cgi-bin/token"): self._token,
            ("POST", "/cgi-bin/stable_token"): self._stable_token,
            ("GET", "/sns/jscode2session"): self._jscode2session,
            ("POST", "/cgi-bin/qrcode/create"): self._qrcode_create,
            ("POST", "/cgi-bin/message/custom/send"): self._custom_send,
            ("POST", "/cgi-bin/message/subscribe/send"): self._subscribe_send,
            ("POST", "/cgi-bin/media/upload"): self._media_upload,
            **{("POST", p): self._typing for p in TYPING_PATHS},
        }
        route = routes.get((method, path))
        if route is None:
            return None
        self._failure(path)
        return route(query, body)

    def _failure(self, path: str) -> None:
        for f in self._failures:
            if f.remaining > 0 and f.path in (None, path):
                f.remaining -= 1
                raise _ApiError(f.errcode, f.errmsg)

    def _app(self, appid: str | None, secret: str | None) -> _App:
        app = self._apps.get(appid or "")
        if app is None:
            raise _ApiError(40013, "invalid appid")
        if secret != app.secret:
            raise _ApiError(40125, "invalid appsecret")
        return app

    def _issue(self, appid: str, kind: str) -> tuple[str, int]:
        app = self._apps[appid]
        token = "FAKE_" + secrets.token_urlsafe(48)
        self._tokens[token] = _Token(appid, kind, time.time() + self.token_expires_in,
                                     expired=app.expire_next)
        app.expire_next = False
        return token, self.token_expires_in

    def _token(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        if query.get("grant_type") != "client_credential":
            raise _ApiError(40002, "invalid grant_type")
        appid = query.get("appid")
        self._app(appid, query.get("secret"))
        token, expires_in = self._issue(appid or "", "classic")
        return {"access_token": token, "expires_in": expires_in}

    def _stable_token(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        data = _json(body)
        if data.get("grant_type") != "client_credential":
            raise _ApiError(40002, "invalid grant_type")
        appid = data.get("appid")
        app = self._app(appid, data.get("secret"))
        current = self._tokens.get(app.stable_token or "")
        if data.get("force_refresh") is True and current is not None:
            current.expired = True
        elif current is not None and current.valid():
            return {"access_token": app.stable_token,
                    "expires_in": int(current.expires_at - time.time())}
        token, expires_in = self._issue(str(appid), "stable")
        app.stable_token = token
        return {"access_token": token, "expires_in": expires_in}

    def _check_token(self, query: dict[str, str]) -> str:
        token = query.get("access_token")
        if not token:
            raise _ApiError(41001, "access_token missing")
        tok = self._tokens.get(token)
        if tok is None:
            raise _ApiError(40001, "invalid credential, access_token is invalid or not latest")
        if not tok.valid():
            raise _ApiError(42001, "access_token expired")
        return tok.appid

    def _jscode2session(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        if query.get("grant_type") != "authorization_code":
            raise _ApiError(40002, "invalid grant_type")
        appid = query.get("appid")
        self._app(appid, query.get("secret"))
        code = self._codes.get(query.get("js_code", ""))
        if code is None or code.used or code.appid != appid or time.time() > code.expires_at:
            raise _ApiError(40029, "invalid code")
        code.used = True
        out = {"session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
               "openid": code.openid}
        if code.unionid:
            out["unionid"] = code.unionid
        return out

    def _qrcode_create(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        appid = self._check_token(query)
        if not self._apps[appid].verified:
            raise _ApiError(48001, "api unauthorized")
        data = _json(body)
        action = data.get("action_name")
        if action not in QR_ACTIONS:
            raise _ApiError(47001, f"data format error: bad action_name {action!r}")
        info = data.get("action_info")
        scene = info.get("scene") if isinstance(info, dict) else None
        if not isinstance(scene, dict):
            raise _ApiError(47001, "data format error: action_info.scene missing "
                                   "(real WeChat would issue a scene-0 code)")
        temporary = action in ("QR_SCENE", "QR_STR_SCENE")
        if action.endswith("STR_SCENE"):
            value = scene.get("scene_str")
            if not isinstance(value, str) or not 1 <= len(value) <= 64:
                raise _ApiError(47001, "data format error: scene_str must be 1..64 characters")
            scene_text = value
        else:
            value = scene.get("scene_id")
            ok = (isinstance(value, int) and not isinstance(value, bool)
                  and (-(2**31) <= value < 2**32 and value != 0 if temporary
                       else 1 <= value <= 100_000))
            if not ok:
                raise _ApiError(47001, "data format error: bad scene_id")
            scene_text = str(value)
        expire: int | None = None
        if temporary:
            expire = data.get("expire_seconds", 60)
            if isinstance(expire, bool) or not isinstance(expire, int) or not 1 <= expire <= MAX_QR_EXPIRE:
                raise _ApiError(47001, "data format error: expire_seconds must be 1..2592000")
        qr = CreatedQr(ticket=_ticket(), appid=appid, action_name=action, scene=scene_text,
                       expire_seconds=expire,
                       expires_at=None if expire is None else time.time() + expire,
                       url="http://weixin.qq.com/q/" + secrets.token_urlsafe(16))
        self.created_qrcodes.append(qr)
        out: dict[str, Any] = {"ticket": qr.ticket, "url": qr.url}
        if expire is not None:
            out["expire_seconds"] = expire
        return out

    def _custom_send(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        appid = self._check_token(query)
        data = _json(body)
        touser, msgtype = data.get("touser"), data.get("msgtype")
        if not isinstance(touser, str) or not touser:
            raise _ApiError(40003, "invalid openid")
        if not isinstance(msgtype, str) or not isinstance(data.get(msgtype), dict):
            raise _ApiError(47001, "data format error: msgtype payload missing")
        if msgtype == "text" and not isinstance(data["text"].get("content"), str):
            raise _ApiError(47001, "data format error: text.content missing")
        if msgtype == "image" and data["image"].get("media_id") not in self._media:
            raise _ApiError(40007, "invalid media_id")
        if self.require_window:
            left, until = self._windows.get(touser, (0, 0.0))
            if time.time() >= until:
                raise _ApiError(45015, "response out of time limit or subscription is canceled")
            if left <= 0:
                raise _ApiError(45047, "out of response count limit")
            self._windows[touser] = (left - 1, until)
        self._typing_until.pop(touser, None)  # a message ends the typing state
        self.sent_messages.append({"appid": appid, **data})
        return {"errcode": 0, "errmsg": "ok"}

    def _typing(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        self._check_token(query)
        data = _json(body)
        touser, command = str(data.get("touser")), data.get("command")
        if command not in ("Typing", "CancelTyping"):
            raise _ApiError(45072, "command field error")
        if time.time() - self._last_action.get(touser, 0.0) > 30:
            raise _ApiError(45080, "has not sent message to user in 30 seconds")
        if command == "Typing":
            if time.time() < self._typing_until.get(touser, 0.0):
                raise _ApiError(45081, "already in typing state")
            self._typing_until[touser] = time.time() + 15
        else:
            self._typing_until.pop(touser, None)
        self.typing.append(data)
        return {"errcode": 0, "errmsg": "ok"}

    def _media_upload(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        raise AssertionError("multipart uploads are handled in _handle")

    def upload_media(self, query: dict[str, str], ctype: str, body: bytes) -> dict[str, Any]:
        """`media/upload`: a multipart form with the file in field `media`; images only here."""
        self._check_token(query)
        if query.get("type") != "image":
            raise _ApiError(40004, "invalid media type")
        part = _multipart_file(ctype, body, "media")
        if part is None:
            raise _ApiError(41005, "media data missing")
        data, mime = part
        media_id = "UP_" + secrets.token_urlsafe(24)
        self._media[media_id] = (data, mime)
        self.uploaded_media.append((media_id, data, mime))
        return {"type": "image", "media_id": media_id, "created_at": int(time.time())}

    def _media_get(self, query: dict[str, str]) -> tuple[int, str, bytes]:
        with self._lock:
            try:
                self._check_token(query)
                got = self._media.get(query.get("media_id", ""))
                if got is None:
                    raise _ApiError(40007, "invalid media_id")
            except _ApiError as e:
                payload = json.dumps({"errcode": e.errcode, "errmsg": _rid(e.errmsg)}).encode()
                return 200, "text/plain", payload
        return 200, got[1], got[0]

    def _subscribe_send(self, query: dict[str, str], body: bytes) -> dict[str, Any]:
        appid = self._check_token(query)
        data = _json(body)
        key = (str(data.get("touser")), str(data.get("template_id")))
        if self._consents.get(key, 0) <= 0:
            raise _ApiError(43101, "user refuse to accept the msg")
        self._consents[key] -= 1
        self.sent_messages.append({"appid": appid, "msgtype": "subscribe", **data})
        return {"errcode": 0, "errmsg": "ok"}


def _multipart_file(ctype: str, body: bytes, field: str) -> tuple[bytes, str] | None:
    """(bytes, type) of the file in `field` of a multipart/form-data body."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not ctype.startswith("multipart/form-data"):
        return None
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            return part.get_payload(decode=True), part.get_content_type()
    return None


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        raise _ApiError(47001, "data format error") from None
    if not isinstance(data, dict):
        raise _ApiError(47001, "data format error")
    return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets bursts of concurrent clients


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-wechat"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        # parse_qs turns an un-encoded `+` into a space, exactly like WeChat's servers.
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeWeChat = self.server.fake  # type: ignore[attr-defined]
        status, ctype, payload = fake._handle(self.server.role, method, parts.path, query, body,  # type: ignore[attr-defined]
                                              self.headers.get("Content-Type", ""))
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- callback driver: what WeChat does to our callback URL --------------------------------------


@dataclass
class Attempt:
    status: int | None  # None when the request failed (timeout, refused)
    body: str
    elapsed: float
    error: str | None = None


@dataclass
class Delivery:
    """What happened to one pushed event: every attempt, and whether WeChat would be satisfied."""

    attempts: list[Attempt] = field(default_factory=list)
    accepted: bool = False
    reply: bytes | None = None  # a passive-reply XML (decrypted in safe mode), if one was sent

    @property
    def count(self) -> int:
        return len(self.attempts)


def signed_query(token: str, *, timestamp: str | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    n = nonce or str(secrets.randbelow(9 * 10**9) + 10**9)
    return {"signature": sha1_signature(token, ts, n), "timestamp": ts, "nonce": n}


def _judge(resp: httpx.Response, crypto: WeChatCrypto | None) -> tuple[bool, bytes | None]:
    """WeChat accepts `success`, an empty body, or a well-formed passive reply."""
    if resp.status_code != 200:
        return False, None
    text = resp.text.strip()
    if text in ("", "success"):
        return True, None
    try:
        root = parse_xml_root(resp.content)
        if crypto is None:
            return True, resp.content
        return True, crypto.decrypt_message(resp.content, root.findtext("MsgSignature"),
                                            root.findtext("TimeStamp"), root.findtext("Nonce"))
    except CallbackError:
        return False, None


async def adeliver_event(url: str, token: str, xml: bytes, *, crypto: WeChatCrypto | None = None,
                         timeout: float = 5.0, attempts: int = 3, retry_delay: float = 0.0,
                         timestamp: str | None = None, nonce: str | None = None,
                         extra_query: dict[str, str] | None = None) -> Delivery:
    """POST `xml` to a callback URL like WeChat: signed query (plus `encrypt_type=aes` and
    `msg_signature` in safe mode), `timeout` per try, up to `attempts` deliveries until the reply
    is accepted. A fresh timestamp/nonce per try unless given."""
    result = Delivery()
    async with httpx.AsyncClient(timeout=timeout) as http:
        for i in range(attempts):
            if i and retry_delay:
                await asyncio.sleep(retry_delay)
            query = signed_query(token, timestamp=timestamp, nonce=nonce)
            body = xml
            if crypto is not None:
                encrypted = crypto.encrypt(xml)
                to_user = parse_xml_root(xml).findtext("ToUserName") or ""
                body = (f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
                        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
                query |= {"encrypt_type": "aes",
                          "msg_signature": crypto.signature(query["timestamp"], query["nonce"],
                                                            encrypted)}
            query |= extra_query or {}
            start = time.monotonic()
            try:
                resp = await http.post(url, params=query, content=body,
                                       headers={"Content-Type": "text/xml"})
            except httpx.HTTPError as e:
                error = "timeout" if isinstance(e, httpx.TimeoutException) else type(e).__name__
                result.attempts.append(Attempt(None, "", time.monotonic() - start, error))
                continue
            result.attempts.append(Attempt(resp.status_code, resp.text, time.monotonic() - start))
            result.accepted, result.reply = _judge(resp, crypto)
            if result.accepted:
                break
    return result


async def adeliver_push(url: str, token: str, plain: bytes, *, fmt: str = "json",
                        crypto: WeChatCrypto | None = None, timeout: float = 5.0, attempts: int = 3,
                        repeat: int = 0) -> Delivery:
    """POST a mini-program message push (wechat.md §6b) like WeChat: signed query, the body in
    `fmt` (in safe mode inside an `Encrypt` envelope of the same format, with `encrypt_type=aes`
    and `msg_signature`), `timeout` per try, up to `attempts` tries with fresh signatures until
    the answer is `success` (or empty); then `repeat` more deliveries of the very same request."""
    result = Delivery()
    ctype = "application/json" if fmt == "json" else "text/xml"
    async with httpx.AsyncClient(timeout=timeout) as http:

        async def post(query: dict[str, str], body: bytes) -> bool:
            start = time.monotonic()
            try:
                resp = await http.post(url, params=query, content=body, headers={"Content-Type": ctype})
            except httpx.HTTPError as e:
                error = "timeout" if isinstance(e, httpx.TimeoutException) else type(e).__name__
                result.attempts.append(Attempt(None, "", time.monotonic() - start, error))
                return False
            result.attempts.append(Attempt(resp.status_code, resp.text, time.monotonic() - start))
            return resp.status_code == 200 and resp.text.strip() in ("", "success")

        for _ in range(attempts):
            query = signed_query(token)
            body = plain
            if crypto is not None:
                body, sig = build_envelope(plain, fmt, MP_ORIGINAL_ID, crypto, query["timestamp"],
                                           query["nonce"])
                query |= {"encrypt_type": "aes", "msg_signature": sig}
            if await post(query, body):
                result.accepted = True
                for _ in range(repeat):
                    await post(query, body)
                break
    return result


def deliver_event(url: str, token: str, xml: bytes, **kw: Any) -> Delivery:
    """Synchronous `adeliver_event` (for sync tests; not from inside a running event loop)."""
    return asyncio.run(adeliver_event(url, token, xml, **kw))


async def averify_url(url: str, token: str, echostr: str = "fake-echostr-12345", *,
                      timeout: float = 5.0) -> Attempt:
    """The console's GET check: signed query + `echostr`; the URL must echo it back verbatim."""
    query = signed_query(token) | {"echostr": echostr}
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            resp = await http.get(url, params=query)
        except httpx.HTTPError as e:
            return Attempt(None, "", time.monotonic() - start, type(e).__name__)
    return Attempt(resp.status_code, resp.text, time.monotonic() - start)


def verify_url(url: str, token: str, echostr: str = "fake-echostr-12345", **kw: Any) -> Attempt:
    return asyncio.run(averify_url(url, token, echostr, **kw))
