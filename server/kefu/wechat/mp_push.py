"""The mini-program's message push (wechat.md §6b): what a user sends in WeChat's own
customer-service chat, as WeChat posts it to kefu. Pure: bytes in, a `MpPush` out.

The mini-program console chooses the format (JSON or XML: the same field names) and the mode
(plain, compatible or safe). In safe mode the body is an envelope whose `Encrypt` holds the
message, encrypted as for the Official Account (crypto.py) and covered by `msg_signature`; the
plaintext is in the chosen format again. `build_push` makes exactly what `parse_push` reads, for
the fake WeChat server and the tests.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from kefu import jsonio
from kefu.errors import BadJson
from kefu.wechat.callback import MAX_XML_BYTES, cdata, parse_xml_root
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import CallbackError, InvalidSignatureError

KINDS = ("text", "image", "miniprogrampage", "event")
ENTER_EVENT = "user_enter_tempsession"
_INT_FIELDS = ("CreateTime", "MsgId")


@dataclass(frozen=True, slots=True)
class MpPush:
    """One pushed message or event. `from_user` is the user's mini-program openid — the same one
    `code2Session` gives the app, so this is the same customer as the in-app chat's."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    msg_id: str | None = None
    content: str | None = None  # text
    pic_url: str | None = None  # image
    media_id: str | None = None  # image
    title: str | None = None  # miniprogrampage
    app_id: str | None = None
    page_path: str | None = None
    thumb_url: str | None = None
    thumb_media_id: str | None = None
    event: str | None = None  # event
    session_from: str | None = None

    @property
    def dedupe_key(self) -> str:
        """WeChat re-sends when kefu is slow: messages carry a MsgId; events are told apart by
        sender + CreateTime (+ Event, to be safe), as wechat.md §4 and §6b say."""
        if self.msg_id:
            return f"msg:{self.msg_id}"
        return f"evt:{self.from_user}:{self.create_time}:{self.event or ''}"


def _is_json(body: bytes) -> bool:
    return body.lstrip()[:1] == b"{"


def _fields(body: bytes) -> dict[str, str]:
    """The top-level fields of a JSON or XML push, every value as text."""
    if len(body) > MAX_XML_BYTES:
        raise CallbackError("push body too large")
    if _is_json(body):
        try:
            obj = jsonio.load_object(body)
        except BadJson as e:
            raise CallbackError(f"malformed push JSON: {e.message}") from None
        return {k: (str(v) if isinstance(v, int | str) and not isinstance(v, bool) else "")
                for k, v in obj.items()}
    root = parse_xml_root(body)
    return {child.tag: (child.text or "") for child in root if len(child) == 0}


def parse_push(body: bytes) -> MpPush:
    """A plaintext push (JSON or XML). Raises `CallbackError` if it is not WeChat's shape."""
    f = _fields(body)

    def need(name: str) -> str:
        value = f.get(name, "").strip()
        if not value:
            raise CallbackError(f"push lacks {name}")
        return value

    def opt(name: str) -> str | None:
        return f.get(name, "").strip() or None

    try:
        create_time = int(need("CreateTime"))
    except ValueError:
        raise CallbackError("CreateTime is not an integer") from None
    msg_type = need("MsgType")
    content = f.get("Content") if msg_type == "text" else None
    if msg_type == "text" and not content:
        raise CallbackError("a text push lacks Content")
    if msg_type == "image" and not opt("MediaId"):
        raise CallbackError("an image push lacks MediaId")
    return MpPush(to_user=need("ToUserName"), from_user=need("FromUserName"), create_time=create_time,
                  msg_type=msg_type, msg_id=opt("MsgId"), content=content, pic_url=opt("PicUrl"),
                  media_id=opt("MediaId"), title=opt("Title"), app_id=opt("AppId"),
                  page_path=opt("PagePath"), thumb_url=opt("ThumbUrl"),
                  thumb_media_id=opt("ThumbMediaId"), event=opt("Event"), session_from=opt("SessionFrom"))


def open_envelope(body: bytes, crypto: WeChatCrypto, msg_signature: str | None, timestamp: str | None,
                  nonce: str | None) -> bytes:
    """The plaintext inside a safe-mode push (JSON or XML envelope), `msg_signature` checked first."""
    encrypted = _fields(body).get("Encrypt", "").strip()
    if not encrypted:
        raise CallbackError("an encrypted push lacks Encrypt")
    if not (msg_signature and timestamp is not None and nonce is not None):
        raise InvalidSignatureError("msg_signature, timestamp and nonce are required")
    expected = crypto.signature(timestamp, nonce, encrypted)
    if not hmac.compare_digest(expected.encode(), msg_signature.encode("utf-8", "surrogatepass")):
        raise InvalidSignatureError("msg_signature mismatch")
    return crypto.decrypt(encrypted)


# ---- making pushes (the fake WeChat server, tests) -----------------------------------------------

def push_fields(msg_type: str, *, to_user: str, from_user: str, create_time: int | None = None,
                msg_id: int | None = None, **extra: str) -> dict[str, Any]:
    """The fields of a push: `extra` in WeChat's names (Content, PicUrl, MediaId, Title, …)."""
    out: dict[str, Any] = {"ToUserName": to_user, "FromUserName": from_user,
                           "CreateTime": int(time.time()) if create_time is None else create_time,
                           "MsgType": msg_type, **extra}
    if msg_id is not None:
        out["MsgId"] = msg_id
    return out


def build_push(fields: dict[str, Any], fmt: str) -> bytes:
    """`fields` as WeChat posts them: JSON, or XML with strings in CDATA and numbers bare."""
    if fmt == "json":
        return json.dumps(fields, ensure_ascii=False).encode()
    parts = ["<xml>"]
    for k, v in fields.items():
        parts.append(f"<{k}>{v}</{k}>" if k in _INT_FIELDS else f"<{k}>{cdata(str(v))}</{k}>")
    parts.append("</xml>")
    return "".join(parts).encode()


def build_envelope(plain: bytes, fmt: str, to_user: str, crypto: WeChatCrypto, timestamp: str,
                   nonce: str) -> tuple[bytes, str]:
    """A safe-mode body for `plain` and its msg_signature."""
    encrypted = crypto.encrypt(plain)
    sig = crypto.signature(timestamp, nonce, encrypted)
    if fmt == "json":
        return json.dumps({"ToUserName": to_user, "Encrypt": encrypted}).encode(), sig
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>"
            .encode(), sig)
