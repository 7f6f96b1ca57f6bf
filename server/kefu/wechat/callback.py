"""Official-Account callback helpers (wechat.md §4): signatures, freshness, event parsing, dedupe keys.

Pure functions, no I/O, so the HTTP handler stays thin: verify, parse, enqueue, answer `success`.
`build_event_xml` lives here too because the XML shape is defined here; the fake server, the
sandbox and tests use it to produce exactly what `parse_event` reads.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from kefu.wechat.errors import CallbackError

MAX_XML_BYTES = 64 * 1024  # WeChat pushes a few hundred bytes; anything huge is not from it
MAX_NONCE = 128  # WeChat's are 9-10 digits; the nonce becomes part of a store key
SCENE_PREFIX = "qrscene_"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: sha1 of the lexicographically sorted parts joined without separator."""
    # surrogatepass: a query may decode to a lone surrogate; it must fail the check, not raise.
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8", "surrogatepass")).hexdigest()


def check_signature(token: str, signature: str | None, timestamp: str | None,
                    nonce: str | None) -> bool:
    """True when `signature` proves the request came from WeChat (constant-time comparison)."""
    if not (token and signature and timestamp is not None and nonce is not None):
        return False
    expected = sha1_signature(token, timestamp, nonce)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass"))


def is_fresh(timestamp: str | None, now: float, window: float) -> bool:
    """Whether a callback's `timestamp` (Unix seconds) is within `window` seconds of `now`, either
    way (clocks drift). The signature covers the timestamp, so an old signed query — from a log,
    say — cannot be made fresh again; together with the nonce check it cannot be replayed."""
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp):
        return False
    return abs(now - int(timestamp)) <= window


def nonce_ok(nonce: str | None) -> bool:
    """A nonce kefu is willing to remember: present, short, printable ASCII."""
    return nonce is not None and 0 < len(nonce) <= MAX_NONCE and nonce.isascii() and nonce.isprintable()


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """One pushed message or event. `scene` is the QR scene for QR scans only: the `qrscene_`
    prefix stripped on `subscribe`, the bare EventKey on `SCAN`, otherwise None."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    event: str | None = None
    event_key: str | None = None
    scene: str | None = None
    ticket: str | None = None
    msg_id: str | None = None
    raw: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_qr_scan(self) -> bool:
        return self.scene is not None


def parse_xml_root(xml: bytes | str) -> Element:
    """Parse untrusted XML with defusedxml (no DTDs, entities or external references)."""
    if len(xml) > MAX_XML_BYTES:
        raise CallbackError("callback body too large")
    try:
        root = fromstring(xml, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as e:
        raise CallbackError(f"malformed callback XML: {type(e).__name__}") from None
    if root.tag != "xml":
        raise CallbackError("callback XML root must be <xml>")
    return root


def parse_event(xml: bytes | str) -> CallbackEvent:
    """Parse a plaintext callback body. Raises `CallbackError` if it is not WeChat's shape."""
    root = parse_xml_root(xml)
    raw = {child.tag: (child.text or "") for child in root if len(child) == 0}

    def need(name: str) -> str:
        value = raw.get(name, "").strip()
        if not value:
            raise CallbackError(f"callback XML lacks <{name}>")
        return value

    def opt(name: str) -> str | None:
        return raw.get(name, "").strip() or None

    try:
        create_time = int(need("CreateTime"))
    except ValueError:
        raise CallbackError("CreateTime is not an integer") from None
    msg_type, event, event_key = need("MsgType"), opt("Event"), opt("EventKey")
    scene = None
    if msg_type == "event" and event is not None and event_key is not None:
        if event.lower() == "subscribe" and event_key.startswith(SCENE_PREFIX):
            scene = event_key[len(SCENE_PREFIX):] or None
        elif event.upper() == "SCAN":
            scene = event_key
    return CallbackEvent(to_user=need("ToUserName"), from_user=need("FromUserName"),
                         create_time=create_time, msg_type=msg_type, event=event,
                         event_key=event_key, scene=scene, ticket=opt("Ticket"),
                         msg_id=opt("MsgId"), raw=raw)


def dedupe_key(event: CallbackEvent) -> str:
    """WeChat re-sends when we are slow; the same push must be handled once. Messages carry a
    MsgId; events are identified by sender + CreateTime (+ Event, to be safe)."""
    if event.msg_id:
        return f"msg:{event.msg_id}"
    return f"evt:{event.from_user}:{event.create_time}:{event.event or ''}"


def cdata(value: str) -> str:
    """`value` as CDATA; a literal `]]>` is split across two sections."""
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_event_xml(*, to_user: str, from_user: str, event: str, event_key: str | None = None,
                    ticket: str | None = None, create_time: int | None = None) -> bytes:
    """An event push exactly as WeChat sends it (strings in CDATA, CreateTime bare)."""
    ts = int(time.time()) if create_time is None else create_time
    parts = [f"<xml><ToUserName>{cdata(to_user)}</ToUserName>",
             f"<FromUserName>{cdata(from_user)}</FromUserName>",
             f"<CreateTime>{ts}</CreateTime><MsgType>{cdata('event')}</MsgType>",
             f"<Event>{cdata(event)}</Event>"]
    if event_key is not None:
        parts.append(f"<EventKey>{cdata(event_key)}</EventKey>")
    if ticket is not None:
        parts.append(f"<Ticket>{cdata(ticket)}</Ticket>")
    parts.append("</xml>")
    return "".join(parts).encode()


def build_scan_xml(*, to_user: str, from_user: str, scene: str, ticket: str, subscribe: bool,
                   create_time: int | None = None) -> bytes:
    """A QR-code scan push: `subscribe` + `qrscene_<scene>` for a new follower, else `SCAN`."""
    if subscribe:
        return build_event_xml(to_user=to_user, from_user=from_user, event="subscribe",
                               event_key=SCENE_PREFIX + scene, ticket=ticket,
                               create_time=create_time)
    return build_event_xml(to_user=to_user, from_user=from_user, event="SCAN", event_key=scene,
                           ticket=ticket, create_time=create_time)
