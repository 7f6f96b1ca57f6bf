"""The composition root: every shared part of one worker built in one order, stopped in reverse.

`start` makes the parts of the worker's `Context` in dependency order, `drain` and `stop` release
them. These are the app's only start and stop listeners (`install`), so the order below is the
whole story: nothing else relies on the order in which Sanic runs listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os

from sanic import Sanic

from kefu import engines, metrics_server, migrate
from kefu.agent_recheck import recheck_forever
from kefu.config import Settings
from kefu.context import Context
from kefu.cs.channel import CsChannel
from kefu.cs.store import CsStore
from kefu.http.wechat_guard import CallbackMarks, Gate
from kefu.media.service import Media
from kefu.preflight import database_label, redis_label
from kefu.push.counts import GroupCounts, LocalCounts, RedisCounts
from kefu.push.groups import GroupStore, MemoryGroups, RedisGroups
from kefu.push.port import PushPort
from kefu.push.service import PushService
from kefu.qr.login import QrLogin
from kefu.qr.store import make_qr_store
from kefu.store.login_throttle import ThrottlePolicy, make_login_throttle
from kefu.store.qr_quota import QrQuotaPolicy, make_qr_quota
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.setup import (
    callback_appid,
    callback_token,
    make_login_provider,
    make_oa_provider,
    push_appid,
    push_token,
)
from kefu.ws.admission import make_caps

log = logging.getLogger("kefu")

#: A young collection walks every container made since the last one that is still alive. Every
#: 700 (Python's default) a relay's messages in flight are nearly all still alive, walked, and
#: walked again in the middle generation: 0.22 s of each 5 s of a relay's main thread. Every
#: 10 000, most have been freed first: 0.03–0.04 s, in pauses of about 4 ms.
YOUNG_COLLECTION_EVERY = 10_000
#: A full collection walks every live object: 0.12 s with 3 200 sockets open, more with more.
#: Python's default (after every 10 collections of the middle generation, ~70 000 allocations)
#: ran one every ~600 connects while sockets piled up — a quarter of a connect's CPU, growing with
#: the sockets held. After ~700 000 allocations (10 000 × 10 × 7) keeps that to a tenth. Garbage
#: cycles that reach the old generation (a closed socket's) wait longer; what waits is bounded by
#: the allocations in between, not by time, and Python still runs a full collection only once the
#: old generation has grown by a quarter.
FULL_COLLECTION_EVERY = 7

SEED_WARNING = (
    "seed binds are ON (KEFU_PUSH_SEED_BINDS=true): a page that sends a bare uid on /ws/push, or "
    '{"type":"init","task_id":…}, receives every push to that id — anyone who knows or guesses an '
    "id gets its pushes. Acceptable only while the ids are random and short-lived (docs/push.md)")


def gate(s: Settings, name: str, token: str, aes_key: str, appid: str, allow_plain: bool,
         marks: CallbackMarks, token_setting: str, key_setting: str) -> Gate:
    """What admits WeChat's requests at one URL; safe mode is possible only with a token and key."""
    crypto = WeChatCrypto(token, aes_key, appid) if aes_key and token else None
    return Gate(name, token, crypto, allow_plain, s.callback_window, marks, token_setting, key_setting)


async def start(self: Context) -> None:
    """Make every part in dependency order; a part is made only after those it uses."""
    s = self.settings
    if s.mysql_url and not migrate.is_current(s):  # `kefu serve` made the embedded file current
        raise RuntimeError("the MySQL schema is not current: run `kefu migrate` first")
    # 1. stores and the node (everything else hangs off them)
    self.engines = engines.build(s)
    self.node = self.engines.node
    redis = self.engines.redis
    self.wechat = make_login_provider(s, redis)
    self.media = Media.from_settings(s, self.engines.db)
    self.node.media = self.media
    await self.node.start()
    await self.media.start()
    # 2. the limits the edges check
    self.socket_caps = make_caps(s)
    self.login_throttle = make_login_throttle(redis, s.redis_prefix, ThrottlePolicy(
        free_per_name=s.login_free_failures, free_per_ip=s.login_free_failures_ip,
        window=s.login_window, delay=s.login_delay, delay_max=s.login_delay_max))
    self.qr_quota = make_qr_quota(redis, s.redis_prefix, QrQuotaPolicy(
        s.qrcode_per_minute, s.qrcode_live_per_ip, float(s.qr_expire_seconds)))
    # 3. WeChat's customer-service channel hooks the node's replies and typing
    lane = self.engines.lane
    self.mp_gate = gate(s, "message push", push_token(s), s.mp_aes_key, push_appid(s), s.mp_allow_plain,
                        make_qr_store(redis, s.redis_prefix + "mp:", lane),  # apart from the callback's
                        "KEFU_MP_TOKEN", "KEFU_MP_AES_KEY")
    self.cs = CsChannel(node=self.node, store=CsStore(self.engines.db), wechat=self.wechat,
                        media=self.media, template_id=s.subscribe_template_id,
                        template_page=s.subscribe_page, template_data=s.subscribe_data,
                        template_state=s.subscribe_state)
    self.node.on_reply = self.cs.on_reply
    self.node.on_agent_typing = self.cs.on_agent_typing
    # 4. pushes to web pages, then QR login (which pushes its token through them)
    channels = lambda: self.node.hub.channels  # noqa: E731
    groups: GroupStore = MemoryGroups() if redis is None else RedisGroups(redis, s.redis_prefix)
    counts: GroupCounts = (LocalCounts(channels) if redis is None
                           else RedisCounts(redis, s.redis_prefix, channels, self.node.node_id))
    self.pushes = PushService(self.node, groups, counts)
    await self.pushes.start()
    if s.push_seed_binds:
        log.warning(SEED_WARNING)
    if not s.push_bind_secret:
        log.info("token binds are off: set KEFU_PUSH_BIND_SECRET so that pages can bind with "
                 "tokens from your backend (docs/push.md)")
    self.oa = make_oa_provider(s, self.wechat)
    self.qr = QrLogin(s, self.node, make_qr_store(redis, s.redis_prefix, lane), self.oa)
    self.callback_gate = gate(s, "callback", callback_token(s), s.oa_aes_key, callback_appid(s),
                              s.oa_allow_plain, self.qr.store, "KEFU_OA_TOKEN", "KEFU_OA_AES_KEY")
    # 5. the edges that are not Sanic's: the TCP push port, the agent re-check
    self.push_port = PushPort(s, self.pushes)
    await self.push_port.start()
    self.recheck = asyncio.create_task(recheck_forever(self.node, s.agent_recheck_interval))
    log.info("worker %d serving http://%s:%s; database %s; redis %s; wechat %s", os.getpid(),
             s.host, s.port, database_label(s), redis_label(s), s.wechat_mode)
    # What startup made (modules, routes, engines: ~100 000 objects) lives as long as the worker;
    # frozen, the cyclic collector stops walking it in every full collection under load.
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, FULL_COLLECTION_EVERY)


async def drain(self: Context) -> None:
    """First half of a stop: no new work from the push port, every socket told to go (1001)."""
    if self.recheck is not None:
        self.recheck.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.recheck
    await self.push_port.stop()
    log.info("worker %d stopping: closing %d socket(s)", os.getpid(), self.node.hub.count())
    await self.node.close_sockets()


async def stop(self: Context) -> None:
    """Second half, in the reverse order of `start`: work under way finishes, then the stores."""
    await self.qr.stop()
    if self.oa is not None and self.oa is not self.wechat:
        await self.oa.aclose()
    await self.pushes.stop()
    self.node.on_reply = None
    self.node.on_agent_typing = None
    await self.cs.stop()
    await self.media.stop()
    await self.node.stop()
    await self.wechat.aclose()
    await self.engines.close()
    metrics_server.process_exit()
    log.info("worker %d stopped", os.getpid())


def install(app: Sanic) -> None:
    """The only start and stop listeners of the app."""

    @app.before_server_start
    async def start_worker(app: Sanic) -> None:
        await start(app.ctx)

    @app.before_server_stop
    async def drain_worker(app: Sanic) -> None:
        await drain(app.ctx)

    @app.after_server_stop
    async def stop_worker(app: Sanic) -> None:
        await stop(app.ctx)
