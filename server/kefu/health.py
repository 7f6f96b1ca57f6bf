"""`/healthz` (liveness: this process answers) and `/readyz` (ready: its dependencies answer).

A load balancer or Kubernetes takes a process out of rotation while `/readyz` says 503 and restarts
it only when `/healthz` stops answering; a database outage therefore makes kefu unready, never dead
(chat goes on without the database: docs/operations.md). docs/protocol.md gives both bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sanic import Request, Sanic, json
from sanic.response import HTTPResponse

from kefu.context import Context, ctx

OK = "ok"
Probe = Callable[[], Awaitable[str]]


async def _twice(probe: Probe) -> str:
    """A pooled connection that went stale during an outage fails once and is discarded; the
    second attempt takes a fresh one, so a recovered dependency is not reported down."""
    try:
        return await probe()
    except Exception:
        return await probe()


async def _bounded(probe: Probe, timeout: float) -> str:
    """"ok", or why the probe failed (its exception, or the timeout)."""
    try:
        return await asyncio.wait_for(_twice(probe), timeout)
    except TimeoutError:
        return f"timeout after {timeout:g}s"
    except Exception as e:
        return f"{type(e).__name__}: {e}"[:200]


def probes(app: Sanic) -> dict[str, Probe]:
    """What this process needs: the database, Redis (when configured) and the broker."""
    parts: Context = app.ctx
    engines = parts.engines

    async def database() -> str:
        async with engines.db.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return OK

    client = engines.redis

    async def redis() -> str:
        assert client is not None  # listed only when Redis is configured
        await client.ping()
        return OK

    async def broker() -> str:
        # The brokers say whether their subscription is live; one without the flag is in-process.
        return OK if getattr(parts.node.broker, "connected", True) else "not connected"

    found: dict[str, Probe] = {"database": database}
    if client is not None:
        found["redis"] = redis
    found["broker"] = broker
    return found


async def readiness(app: Sanic, timeout: float) -> dict[str, Any]:
    """Run every probe at once, each bounded by `timeout` seconds."""
    named = probes(app)
    results = await asyncio.gather(*(_bounded(p, timeout) for p in named.values()))
    checks = dict(zip(named, results, strict=True))
    failed = [name for name, verdict in checks.items() if verdict != OK]
    return {"ready": not failed, "failed": failed, "checks": checks}


def install(app: Sanic) -> None:
    @app.get("/healthz")
    async def healthz(request: Request) -> HTTPResponse:
        return json({"ok": True, "connections": ctx(request).node.hub.count()})

    @app.get("/readyz")
    async def readyz(request: Request) -> HTTPResponse:
        body = await readiness(request.app, ctx(request).settings.ready_timeout)
        return json(body, status=200 if body["ready"] else 503)
