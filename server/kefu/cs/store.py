"""The channel's state in the database, shared by every node: each user's customer-service window
(`cs_windows`) and their subscribe consents (`subscribe_consents`). Spending one message of a
window, or one consent, is a conditional UPDATE, so two nodes replying at once never spend more
than there is."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.cs.window import Window
from kefu.store.retry import in_transaction
from kefu.store.schema import cs_windows, subscribe_consents
from kefu.store.upsert import proposed, upsert

W = cs_windows
C = subscribe_consents


def now_ms() -> int:
    return int(time.time() * 1000)


class CsStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # ---- windows -----------------------------------------------------------------------------

    async def window(self, openid: str) -> Window | None:
        async with self.engine.connect() as c:
            r = (await c.execute(sa.select(W).where(W.c.openid == openid))).first()
        if r is None:
            return None
        return Window(r.openid, int(r.opened_at), int(r.expires_at), int(r.quota), int(r.used),
                      int(r.last_action_at))

    async def put_window(self, w: Window) -> None:
        row = {"openid": w.openid, "opened_at": w.opened_at, "expires_at": w.expires_at, "quota": w.quota,
               "used": w.used, "last_action_at": w.last_action_at, "updated_at": now_ms()}
        stmt = upsert(self.dialect, W, row, ["openid"], {k: proposed(k) for k in row if k != "openid"})

        async def run(c: AsyncConnection) -> None:
            await c.execute(stmt)
        await in_transaction(self.engine, run, "saving a customer-service window")

    async def spend(self, openid: str, now: int) -> bool:
        """Take one message of the open window; False if there is none left."""
        async def run(c: AsyncConnection) -> bool:
            res = await c.execute(sa.update(W).where(W.c.openid == openid, W.c.expires_at > now,
                                                     W.c.used < W.c.quota)
                                  .values(used=W.c.used + 1, updated_at=now))
            return res.rowcount > 0
        return await in_transaction(self.engine, run, "spending a customer-service message")

    async def refund(self, openid: str) -> None:
        """The message was not sent (WeChat unreachable): give it back."""
        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.update(W).where(W.c.openid == openid, W.c.used > 0).values(used=W.c.used - 1))
        await in_transaction(self.engine, run, "refunding a customer-service message")

    # ---- subscribe consents ------------------------------------------------------------------

    async def consents(self, openid: str, template_id: str) -> int:
        async with self.engine.connect() as c:
            got = await c.scalar(sa.select(C.c.granted).where(C.c.openid == openid,
                                                              C.c.template_id == template_id))
        return int(got or 0)

    async def grant(self, openid: str, template_id: str, n: int = 1) -> int:
        row = {"openid": openid, "template_id": template_id, "granted": n, "updated_at": now_ms()}
        stmt = upsert(self.dialect, C, row, ["openid", "template_id"],
                      {"granted": C.c.granted + n, "updated_at": row["updated_at"]})

        async def run(c: AsyncConnection) -> None:
            await c.execute(stmt)
        await in_transaction(self.engine, run, "recording a subscribe consent")
        return await self.consents(openid, template_id)

    async def take(self, openid: str, template_id: str) -> bool:
        """Use one consent; False if there is none."""
        async def run(c: AsyncConnection) -> bool:
            res = await c.execute(sa.update(C).where(C.c.openid == openid, C.c.template_id == template_id,
                                                     C.c.granted > 0)
                                  .values(granted=C.c.granted - 1, updated_at=now_ms()))
            return res.rowcount > 0
        return await in_transaction(self.engine, run, "using a subscribe consent")

    async def clear(self, openid: str, template_id: str) -> None:
        """WeChat says there is no consent (43101): kefu's count was wrong."""
        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.update(C).where(C.c.openid == openid, C.c.template_id == template_id)
                            .values(granted=0, updated_at=now_ms()))
        await in_transaction(self.engine, run, "clearing subscribe consents")
