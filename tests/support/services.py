"""Real MariaDB and Redis for tests: one database name and one key prefix per run, removed after."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pymysql
import redis
from redis.asyncio import Redis as AsyncRedis

MYSQL_HOST = os.environ.get("KEFU_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("KEFU_TEST_MYSQL_PORT", "3306"))
REDIS_URL_BASE = os.environ.get("KEFU_TEST_REDIS", "redis://127.0.0.1:6379/0")
REDIS_HOST = urlsplit(REDIS_URL_BASE).hostname or "127.0.0.1"
REDIS_PORT = urlsplit(REDIS_URL_BASE).port or 6379


def redis_url_via(port: int) -> str:
    """The tests' Redis database, reached through a proxy on 127.0.0.1:`port`."""
    return f"redis://127.0.0.1:{port}{urlsplit(REDIS_URL_BASE).path}"
RUN_ID = uuid.uuid4().hex[:8]


def mysql_admin() -> pymysql.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="", autocommit=True)


def create_database() -> str:
    ensure_mysql()
    name = f"kefu_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with mysql_admin() as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


def drop_database(name: str) -> None:
    with mysql_admin() as c, c.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def mysql_url(db: str, port: int = MYSQL_PORT) -> str:
    return f"mysql://root@{MYSQL_HOST}:{port}/{db}"


def new_redis_prefix() -> str:
    ensure_redis()
    return f"kefutest:{RUN_ID}:{uuid.uuid4().hex[:6]}:"


@contextlib.asynccontextmanager
async def redis_under_prefix() -> AsyncIterator[tuple[AsyncRedis, str]]:
    """An asyncio client of the machine's Redis and a key prefix of its own, removed after."""
    prefix = new_redis_prefix()
    client = AsyncRedis.from_url(REDIS_URL_BASE)
    try:
        yield client, prefix
    finally:
        await client.aclose()
        drop_redis_prefix(prefix)


def drop_redis_prefix(prefix: str) -> None:
    r = redis.Redis.from_url(REDIS_URL_BASE)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
    finally:
        r.close()


@functools.cache
def ensure_redis() -> None:
    """Start the machine's Redis if it is down (the command scripts/test gives). Only the
    tests that need Redis call this, so the pure tests run without it."""
    try:
        redis.Redis.from_url(REDIS_URL_BASE, socket_connect_timeout=2).ping()
    except redis.RedisError:
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
                        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                        "--logfile", "/var/log/redis/ci.log"], check=True)
        for _ in range(60):
            try:
                redis.Redis.from_url(REDIS_URL_BASE, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.25)


@functools.cache
def ensure_mysql() -> None:
    """Start the machine's MariaDB if it is down; only tests that need it call this."""
    try:
        mysql_admin().close()
    except pymysql.MySQLError:
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background",
                        "--exec", "/usr/sbin/mariadbd"], check=True)
        for _ in range(60):
            try:
                mysql_admin().close()
                break
            except pymysql.MySQLError:
                time.sleep(0.5)
