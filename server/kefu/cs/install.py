"""WeChat's customer-service channel, wired into the app: `install(app, settings)`.

Routes: `/wechat/mp` (the mini-program's message push), `/api/me/subscribe`,
`/api/wechat/reach/{openid}`. At start it hooks the node (agents' replies and typing) after the
core is up; at stop it lets forwards under way finish first.
"""

from __future__ import annotations

from sanic import Sanic

from kefu.config import Settings
from kefu.cs.channel import CsChannel
from kefu.cs.store import CsStore
from kefu.http.wechat_mp import mp_bp
from kefu.qr.store import make_qr_store
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.setup import push_appid, push_token

__all__ = ["install"]


def install(app: Sanic, settings: Settings) -> None:
    app.blueprint(mp_bp)

    @app.before_server_start
    async def start_cs(app: Sanic) -> None:
        node = app.ctx.node
        app.ctx.push_token = push_token(settings)
        app.ctx.push_crypto = (WeChatCrypto(app.ctx.push_token, settings.mp_aes_key, push_appid(settings))
                               if settings.mp_aes_key and app.ctx.push_token else None)
        # Push dedupe and nonce marks, apart from the Official Account callback's.
        app.ctx.cs_marks = make_qr_store(app.ctx.engines.redis, settings.redis_prefix + "mp:")
        channel = CsChannel(node=node, store=CsStore(app.ctx.engines.db), wechat=app.ctx.wechat,
                            media=app.ctx.media, template_id=settings.subscribe_template_id,
                            template_page=settings.subscribe_page, template_data=settings.subscribe_data,
                            template_state=settings.subscribe_state)
        app.ctx.cs = channel
        node.on_reply = channel.on_reply
        node.on_agent_typing = channel.on_agent_typing

    @app.after_server_stop
    async def stop_cs(app: Sanic) -> None:
        app.ctx.node.on_reply = None
        app.ctx.node.on_agent_typing = None
        await app.ctx.cs.stop()
