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


async def test_a_value_made_once_is_the_same_for_a_process_whose_insert_lost_the_race(redis_deployment):
    """Two workers starting on a new MariaDB database both make the epoch and the media secret: the
    one whose insert waits for the other's and is ignored must read the winner's value, not nothing
    (a read before its insert would pin a snapshot without the row)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from kefu.config import to_driver_url
    from kefu.store.upsert import made_once

    redis_deployment.server(start=False)  # creates the schema
    engine = create_async_engine(to_driver_url(services.mysql_url(redis_deployment.database),
                                               "mysql+aiomysql"))
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            assert await made_once(first, "race", "first") == "first"  # inserted, not yet committed
            await second.begin()
            loser = asyncio.create_task(made_once(second, "race", "second"))
            await asyncio.sleep(0.5)
            assert not loser.done()  # its insert waits for the first transaction
            await first.commit()
            assert await asyncio.wait_for(loser, 10) == "first"
            await second.commit()
    finally:
        await engine.dispose()
