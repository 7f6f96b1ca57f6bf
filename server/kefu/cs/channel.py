"""The customer-service channel's work: pushes in, replies and typing out.

In: a push (wechat/mp_push.py) becomes a message in the user's one conversation — the same
openid as their in-app socket — marked `meta.via = "wechat"`, through `Node.accept_inbound` (the
journal, assignment, unread counts, history). Its `cmid` is `wx:<MsgId>`, so even a retry that
slipped past the push dedupe is stored once. A picture is fetched with the temporary-media API and
stored like an upload.

Out: an agent's reply the user's sockets did not get goes by customer-service message while the
window is open (text; a picture is uploaded as temporary media first), else by the one "reply
received" subscribe message the user allowed, else nowhere — and every outcome is recorded in the
conversation as a `delivery` event (agents only) naming the reply and WeChat's reason, so nothing
is dropped silently. Agents' typing is forwarded while the user was active in the last 30 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from kefu.background import Background
from kefu.core.routing import DESK, desk_envelope
from kefu.core.session import Accepted
from kefu.cs import window as rules
from kefu.cs.store import CsStore, now_ms
from kefu.cs.subscribe import template_data
from kefu.errors import Unavailable, is_infrastructure
from kefu.journal.base import draft
from kefu.media.images import BadImage
from kefu.media.service import Media
from kefu.node import Node
from kefu.protocol import IMAGE_PLACEHOLDER, Identity, Message, is_openid
from kefu.wechat.client import WeChatProvider
from kefu.wechat.errors import WeChatError, WeChatUnavailable
from kefu.wechat.mp_push import ENTER_EVENT, MpPush

log = logging.getLogger(__name__)
FETCH_ATTEMPTS = 3
VIA = "wechat"

#: Why a reply did not reach the user (the console words each; `errcode` carries WeChat's code).
REASONS = {rules.OUT_OF_WINDOW: "out_of_window", rules.QUOTA_USED: "quota", rules.NO_CONSENT: "no_consent"}


def _cmid(key: str) -> str:
    """A cmid for a push: `wx:<MsgId>` when it fits, else a digest of its dedupe key."""
    cmid = "wx:" + key[4:] if key.startswith("msg:") else ""
    return cmid if 4 <= len(cmid) <= 64 and cmid.isascii() else "wx:" + hashlib.sha1(key.encode()).hexdigest()


class CsChannel:
    def __init__(self, *, node: Node, store: CsStore, wechat: WeChatProvider, media: Media,
                 template_id: str, template_page: str, template_data: str, template_state: str) -> None:
        self.node = node
        self.store = store
        self.wechat = wechat
        self.media = media
        self.template_id = template_id
        self.template_page = template_page
        self.template_spec = template_data
        self.template_state = template_state
        self.background = Background(log, "customer-service channel")
        self._typing_at: dict[str, float] = {}

    async def stop(self, grace: float = 5.0) -> None:
        await self.background.stop(grace)

    # ---- in: pushes --------------------------------------------------------------------------

    async def receive(self, push: MpPush, first: bool) -> None:
        """A verified push (`first`: not seen within the dedupe window). Text and events are stored
        before the answer, so a failure answers 503 and WeChat retries (the cmid makes the retry
        count once); a picture is fetched in the background, WeChat waiting only 5 s."""
        openid = push.from_user
        if not is_openid(openid):
            log.warning("message push from an odd FromUserName ignored")
            return
        if push.msg_type == "event":
            if push.event == ENTER_EVENT:
                await self._entered(push)
            return
        if push.msg_type in ("image", "miniprogrampage"):
            if first:  # nothing awaited before: a failure here could not be retried by WeChat
                self.background.spawn(self._with_media(push), "storing a picture from WeChat")
            return
        if push.msg_type == "text":
            draft = self._draft(push, "text", push.content or "", {})
        else:  # voice, video, … : not shown, but never dropped unseen
            draft = self._draft(push, "text", f"[暂不支持的消息类型：{push.msg_type}]",
                                {"msg_type": push.msg_type})
        if not (await self.node.accept_inbound(draft)).dup:
            await self._opened(openid)

    def _draft(self, push: MpPush, kind: str, msg: str, meta: dict[str, Any]) -> Message:
        return draft(ts=now_ms(), openid=push.from_user, sender="user", msg=msg,
                     cmid=_cmid(push.dedupe_key), kind=kind, meta={"via": VIA, **meta})

    async def _opened(self, openid: str) -> None:
        await self.store.put_window(rules.after_message(openid, now_ms()))
        await self.announce(openid)

    async def _entered(self, push: MpPush) -> None:
        openid = push.from_user
        await self.store.put_window(rules.after_enter(await self.store.window(openid), openid, now_ms()))
        meta: dict[str, Any] = {"event": "wechat_enter", "via": VIA}
        if push.session_from:
            meta["session_from"] = push.session_from[:256]
        await self.node.journal.accept(draft(ts=now_ms(), openid=openid, sender="agent",
                                             msg="entered WeChat's customer-service chat",
                                             cmid=_cmid(push.dedupe_key), kind="event", meta=meta), "")
        await self.announce(openid)

    async def _fetch(self, media_id: str, openid: str) -> dict[str, Any] | None:
        """A temporary media stored as a picture of `openid`'s conversation; None if it cannot be."""
        for attempt in range(FETCH_ATTEMPTS):
            try:
                data = await self.wechat.get_temp_media(media_id)
                return (await self.media.ingest(data, openid, VIA, source=VIA)).meta()
            except WeChatUnavailable as e:
                log.warning("fetching a picture from WeChat failed (%s); attempt %d", e, attempt + 1)
                await asyncio.sleep(0.5 * 2**attempt)
            except (WeChatError, BadImage) as e:
                log.warning("a picture from WeChat could not be stored: %s", e)
                return None
        return None

    async def _with_media(self, push: MpPush) -> None:
        openid = push.from_user
        await self._opened(openid)
        if push.msg_type == "image":
            image = await self._fetch(push.media_id or "", openid)
            meta: dict[str, Any] = {"image": image} if image else {"unavailable": True}
            draft = self._draft(push, "image", IMAGE_PLACEHOLDER, meta)
        else:
            card: dict[str, Any] = {"title": push.title or "", "appid": push.app_id or "",
                                    "pagepath": push.page_path or ""}
            if push.thumb_media_id:
                thumb = await self._fetch(push.thumb_media_id, openid)
                if thumb:
                    card["image"] = thumb
            draft = self._draft(push, "card", f"[小程序卡片] {push.title or ''}".strip(), {"card": card})
        for attempt in range(5):  # the push was acknowledged already: keep trying to store it
            try:
                await self.node.accept_inbound(draft)
                return
            except Unavailable:
                await asyncio.sleep(0.5 * 2**attempt)
        log.error("a %s from WeChat (user %s) could not be stored", push.msg_type, openid)

    # ---- out: replies ------------------------------------------------------------------------

    def on_reply(self, result: Accepted) -> None:
        m = result.message
        if not result.delivered and m.for_user and m.sender == "agent":
            self.background.spawn(self.forward(m), "forwarding a reply")

    async def forward(self, m: Message) -> None:
        """Deliver `m` by customer-service message, else by subscribe message; record the outcome."""
        if await self.node.is_online("user", m.openid):
            return  # connected meanwhile: the socket has it (sync)
        now = now_ms()
        w = await self.store.window(m.openid)
        errcode: int | None = None
        reason = "offline"  # the user never opened a window: only a subscribe message can reach them
        if w is not None and w.is_open(now) and await self.store.spend(m.openid, now):
            try:
                await self._send_cs(m)
                await self._record(m, "wechat", "sent")
                await self.announce(m.openid)
                return
            except WeChatError as e:
                errcode, reason = e.errcode, REASONS.get(e.errcode, "wechat_error")
                if e.errcode in (rules.OUT_OF_WINDOW, rules.QUOTA_USED):
                    await self.store.put_window(rules.after_error(w, e.errcode, now_ms()))
                else:
                    await self.store.refund(m.openid)
            except WeChatUnavailable:
                reason = "unreachable"
                await self.store.refund(m.openid)
            await self.announce(m.openid)
        elif w is not None:
            reason = "out_of_window" if now >= w.expires_at else "quota"
        if await self._subscribe(m, reason, errcode):
            return
        if w is not None:  # a user who never wrote in WeChat's chat: the app's history has it
            await self._record(m, "wechat", "failed", reason, errcode)

    async def _send_cs(self, m: Message) -> None:
        if m.kind == "image" and isinstance((m.meta or {}).get("image"), dict):
            rec = await self.media.index.get(m.meta["image"]["id"]) if m.meta else None
            data = await self.media.read(rec) if rec is not None else None
            if rec is None or data is None:
                raise WeChatError(40007, "the picture is no longer stored")
            await self.wechat.send_custom_image(m.openid, await self.wechat.upload_temp_image(data, rec.mime))
        else:
            await self.wechat.send_custom_text(m.openid, m.msg)

    async def _subscribe(self, m: Message, reason: str, errcode: int | None) -> bool:
        """The one subscribe message a consent allows, pointing back to the chat page."""
        if not self.template_id or not await self.store.take(m.openid, self.template_id):
            return False
        data = template_data(self.template_spec, text=m.msg, agent=m.agent or "")
        try:
            await self.wechat.send_subscribe(m.openid, self.template_id, self.template_page, data,
                                             self.template_state)
        except WeChatError as e:
            if e.errcode == rules.NO_CONSENT:
                await self.store.clear(m.openid, self.template_id)
            await self._record(m, "subscribe", "failed", REASONS.get(e.errcode, "wechat_error"), e.errcode,
                               wechat_reason=reason, wechat_errcode=errcode)
            await self.announce(m.openid)
            return True
        except WeChatUnavailable:
            await self.store.grant(m.openid, self.template_id)  # not used after all
            return False
        await self._record(m, "subscribe", "sent", wechat_reason=reason, wechat_errcode=errcode)
        await self.announce(m.openid)
        return True

    async def _record(self, m: Message, via: str, status: str, reason: str | None = None,
                      errcode: int | None = None, **more: Any) -> None:
        meta: dict[str, Any] = {"event": "delivery", "message_id": m.id, "via": via, "status": status}
        if reason:
            meta["reason"] = reason
        if errcode is not None:
            meta["errcode"] = errcode
        meta.update({k: v for k, v in more.items() if v is not None})
        text = f"reply {m.id} {status} via {via}" + (f": {reason}" if reason else "")
        if errcode is not None:
            text += f" ({errcode})"
        await self.node.journal.accept(draft(ts=now_ms(), openid=m.openid, sender="agent", msg=text,
                                             kind="event", meta=meta), "")

    # ---- out: typing -------------------------------------------------------------------------

    def on_agent_typing(self, who: Identity, openid: str) -> None:
        last = self._typing_at.get(openid, 0.0)
        if time.monotonic() - last < rules.TYPING_LASTS_MS / 1000:
            return  # WeChat shows it for 15 s and refuses a repeat meanwhile (45081)
        self._typing_at[openid] = time.monotonic()
        if len(self._typing_at) > 10_000:
            self._typing_at.clear()
        self.background.spawn(self._typing(openid), "forwarding typing")

    async def _typing(self, openid: str) -> None:
        if await self.node.is_online("user", openid):
            return
        w = await self.store.window(openid)
        if w is None or not w.may_type(now_ms()):
            return
        try:
            await self.wechat.set_typing(openid, True)
        except (WeChatError, WeChatUnavailable) as e:
            log.info("typing not forwarded to WeChat: %s", e)

    # ---- state for the console and the mini-program ------------------------------------------

    async def reach(self, openid: str) -> dict[str, Any]:
        consents = await self.store.consents(openid, self.template_id) if self.template_id else 0
        return rules.reach(await self.store.window(openid), await self.node.is_online("user", openid),
                           bool(self.template_id), consents, now_ms())

    async def announce(self, openid: str) -> None:
        """Tell every team console where this user can be reached now."""
        try:
            frame = {"cmd": "reach", "openid": openid, "reach": await self.reach(openid)}
            await self.node.broker.publish((DESK,), desk_envelope(frame))
        except Exception as e:
            if not is_infrastructure(e):
                raise
            log.warning("reach of %s not announced: %s", openid, e)
