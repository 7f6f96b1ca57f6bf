"""/readyz follows the dependencies of every worker: 503 naming MariaDB or Redis while a TCP proxy
cuts it, 200 again after; /healthz (liveness) answers throughout."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.support import services
from tests.support.proxy import CuttableProxy
from tests.support.server import free_port

SCRAPES = 6  # with two workers, six answers all but surely come from both


async def _readyz(base: str) -> tuple[int, dict]:
    def get() -> httpx.Response:
        return httpx.get(base + "/readyz", timeout=5)
    r = await asyncio.to_thread(get)
    return r.status_code, r.json()


async def _until(base: str, status: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await _readyz(base))[0] == status:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz did not turn {status} within {timeout}s: {await _readyz(base)}")


async def test_readyz_turns_503_naming_mariadb_or_redis_while_cut_and_200_after(redis_deployment):
    d = redis_deployment
    mysql = CuttableProxy(services.MYSQL_HOST, services.MYSQL_PORT)
    redis = CuttableProxy("127.0.0.1", int(services.REDIS_URL_BASE.rsplit(":", 1)[1].split("/")[0]))
    await mysql.start()
    await redis.start()
    srv = d.server(start=False, KEFU_WORKERS="2", KEFU_READY_TIMEOUT="0.5", KEFU_PUSH_PORT="0",
                   KEFU_METRICS_PORT=str(free_port()))  # migrates through the direct URL
    srv.env["MYSQL_URL"] = services.mysql_url(d.database, port=mysql.port)
    srv.env["REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
    await asyncio.to_thread(srv.start)
    base = srv.base_url
    await _until(base, 200)
    for _ in range(SCRAPES):
        assert await _readyz(base) == (200, {"ready": True, "failed": [],
                                             "checks": {"database": "ok", "redis": "ok", "broker": "ok"}})

    for proxy, name in ((mysql, "database"), (redis, "redis")):
        await proxy.cut()
        for _ in range(SCRAPES):
            started = time.monotonic()
            status, body = await _readyz(base)
            assert status == 503 and name in body["failed"] and body["ready"] is False, body
            assert body["checks"][name] != "ok"
            assert time.monotonic() - started < 3, "each probe is bounded by KEFU_READY_TIMEOUT"
            # alive all the same (asked from a thread: the proxies run on this loop)
            assert (await asyncio.to_thread(httpx.get, base + "/healthz")).status_code == 200
        await proxy.restore()
        await _until(base, 200)
        for _ in range(SCRAPES):
            assert (got := await _readyz(base))[0] == 200, got
    await asyncio.to_thread(srv.stop)
    await mysql.cut()
    await redis.cut()
