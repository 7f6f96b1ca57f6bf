"""QR scan login (docs/qr-login.md): make the QR code, check a page's ticket, log the scanner in.

`create` reserves a fresh uid (unique among live ones), asks the Official Account for a temporary
QR_STR_SCENE code with scene = uid and records `uid → ticket` until the code expires. A scan arrives
as a callback event; `accept` dedupes it and hands it to a background task (WeChat wants its answer
within 5 s), which claims the QR code (once), finds or creates the user by its OA openid, issues a
user token and pushes `{"ticket", "expire_seconds", "uid", "token"}` to the page bound to uid+ticket.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass

from kefu.background import Background
from kefu.config import Settings
from kefu.core.push import page_ticket_channel
from kefu.node import Node
from kefu.protocol import is_openid, is_uid
from kefu.qr.store import QrStore
from kefu.wechat.callback import CallbackEvent, dedupe_key
from kefu.wechat.client import WeChatProvider

log = logging.getLogger(__name__)

CALLBACK_DEDUPE_TTL = 300  # WeChat retries within ~15 s; five minutes leaves a wide margin
RESERVE_SECONDS = 30  # how long a uid stays taken while WeChat creates its QR code
UID_ATTEMPTS = 8


class QrUnavailable(Exception):
    """No Official Account is configured (real mode without KEFU_OA_APPID/KEFU_OA_SECRET)."""


@dataclass(frozen=True, slots=True)
class NewQr:
    uid: str
    ticket: str
    expire_seconds: int
    image: str | None

    def to_json(self, sandbox: bool) -> dict:
        return {"ticket": self.ticket, "expire_seconds": self.expire_seconds, "uid": self.uid,
                "image": self.image, "sandbox": sandbox}


def new_uid() -> str:
    """20 hex digits: unguessable enough that a uid alone reveals nothing; the ticket guards it."""
    return secrets.token_hex(10)


class QrLogin:
    def __init__(self, settings: Settings, node: Node, store: QrStore,
                 oa: WeChatProvider | None) -> None:
        self.settings = settings
        self.node = node
        self.store = store
        self.oa = oa
        self.background = Background(log, "QR login")

    # ---- the page side ---------------------------------------------------------------------

    async def create(self) -> NewQr:
        """A fresh QR code. Raises QrUnavailable, WeChatError/WeChatUnavailable, StoreFull."""
        if self.oa is None:
            raise QrUnavailable("QR login needs an Official Account: set KEFU_OA_APPID and "
                                "KEFU_OA_SECRET (KEFU_WECHAT_MODE=real)")
        for _ in range(UID_ATTEMPTS):
            uid = new_uid()
            if await self.store.reserve(uid, RESERVE_SECONDS):
                break
        else:  # 80 random bits colliding eight times running: the store is lying
            raise RuntimeError("could not allocate a unique QR uid")
        try:
            qr = await self.oa.create_temp_qrcode(uid, self.settings.qr_expire_seconds)
            await self.store.put(uid, qr.ticket, qr.expire_seconds)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.store.drop(uid)
            raise
        return NewQr(uid, qr.ticket, qr.expire_seconds, self.oa.qrcode_image_url(qr.ticket))

    async def ticket_ok(self, uid: str, ticket: str) -> bool:
        """May a page bind uid with ticket: the QR code is live (or was just used) and it is its."""
        rec = await self.store.get(uid)
        return rec is not None and rec.state != "reserved" and rec.ticket == ticket

    # ---- the WeChat side -------------------------------------------------------------------

    async def accept(self, event: CallbackEvent) -> bool:
        """A verified callback event: act on a QR scan once. Returns False for a duplicate.
        Store trouble propagates, so the callback fails and WeChat retries."""
        key = dedupe_key(event)
        if event.ticket:  # a retry repeats the ticket; two scans in one second do not
            key += ":" + hashlib.sha256(event.ticket.encode()).hexdigest()[:16]
        if not await self.store.first_seen(key, CALLBACK_DEDUPE_TTL):
            log.info("duplicate callback ignored (%s, scene %s)", event.event or event.msg_type,
                     event.scene)
            return False
        if event.is_qr_scan:
            self.background.spawn(self.login(event), "logging a scan in")
        else:
            log.debug("callback event %s/%s: nothing to do", event.msg_type, event.event)
        return True

    async def login(self, event: CallbackEvent) -> bool:
        """Log the scanner in and push the token to the page. True when a page received it."""
        uid, ticket, openid = event.scene or "", event.ticket or "", event.from_user
        if not is_uid(uid) or not ticket:
            log.warning("QR scan ignored: scene %r is not a kefu uid, or no ticket", uid[:70])
            return False
        if not is_openid(openid):
            log.warning("QR scan for uid %s ignored: odd openid", uid)
            return False
        expire_seconds = await self.store.claim(uid, ticket)
        if expire_seconds is None:
            rec = await self.store.get(uid)
            why = ("unknown or expired QR code" if rec is None or rec.state == "reserved"
                   else "ticket does not match" if rec.ticket != ticket else "QR code already used")
            log.warning("QR scan for uid %s pushes nothing: %s", uid, why)
            return False
        ttl = self.settings.user_token_ttl
        try:
            token = await self.node.login_user(openid, None, ttl)
        except Exception:
            await self.store.release(uid, ticket)
            raise
        frame = {"ticket": ticket, "expire_seconds": expire_seconds, "uid": uid, "token": token}
        try:
            nodes = await self.node.push(page_ticket_channel(uid, ticket), frame)
        except Exception:
            nodes = 0
            log.exception("QR login push for uid %s failed", uid)
        if nodes == 0:
            # Nobody got the token: withdraw it, and let a rescan try while the code lives.
            log.warning("QR login for uid %s: no page is bound to it; token withdrawn", uid)
            with contextlib.suppress(Exception):
                await self.node.tokens.revoke(token)
            await self.store.release(uid, ticket)
            return False
        log.info("QR login for uid %s pushed (%d node(s))", uid, nodes)
        return True

    async def stop(self, grace: float = 5.0) -> None:
        """Let logins under way finish (a drain), then cut what is left."""
        await self.background.stop(grace)
