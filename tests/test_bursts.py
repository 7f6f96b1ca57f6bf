"""Bursts: concurrent first logins and connect storms lose nobody.

The storms are bounded in count (2000 sockets) and time (each socket waits at most 60 s); their
speed is measured by `python -m bench.burst`, never here.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pymysql
import pytest
from bench.burst import storm
from bench.targets import started

from tests.conftest import BACKENDS
from tests.support import services

SOCKETS = 2000


async def test_200_first_logins_at_once_all_succeed_and_store_each_user_once(redis_deployment):
    srv = redis_deployment.server()
    codes = [f"first-{i}" for i in range(200)] * 2  # every new user logs in twice, at the same time
    limits = httpx.Limits(max_connections=len(codes))
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=60, limits=limits) as http:
        rs = await asyncio.gather(*(http.post("/api/login", json={"code": c}) for c in codes))
        statuses = Counter(r.status_code for r in rs)
        assert statuses == {200: len(codes)}, [r.text for r in rs if r.status_code != 200][:5]
    openids = {(c, r.json()["openid"]) for c, r in zip(codes, rs, strict=True)}
    assert len(openids) == 200  # the two logins of one code are one user
    with pymysql.connect(host=services.MYSQL_HOST, port=services.MYSQL_PORT, user="root", password="",
                         database=redis_deployment.database) as c, c.cursor() as cur:
        cur.execute("SELECT openid, COUNT(*) FROM users GROUP BY openid")
        rows = dict(cur.fetchall())
    assert set(rows) == {o for _, o in openids}
    assert set(rows.values()) == {1}


@pytest.mark.parametrize("kind", ["chat", "page"])
@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_socket_of_a_burst_gets_its_hello_or_bind_echo(backend, kind):
    async with started(backend, "push" if kind == "page" else "idle", max_seconds=300) as target:
        s = await storm(target, kind, SOCKETS, timeout=60)
    assert s.outcomes == Counter(ok=SOCKETS), s.outcomes
