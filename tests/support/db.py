"""Reading what actually reached the database, bypassing kefu, for storage assertions."""

from __future__ import annotations

import sqlite3
import time

import pymysql

from tests.support import services


def stored_messages(deployment) -> list[dict]:  # type: ignore[no-untyped-def]
    """All rows of `messages`, ordered by id, straight from SQLite or MariaDB."""
    # What users see (the chat); agents' notes and status events are not counted here.
    q = ("SELECT id, openid, sender, cmid, body FROM messages WHERE kind IN ('text', 'image', 'card') "
         "ORDER BY id")
    if deployment.database:
        with pymysql.connect(host=services.MYSQL_HOST, port=services.MYSQL_PORT, user="root", password="",
                             database=deployment.database, charset="utf8mb4") as c, c.cursor() as cur:
            cur.execute(q)
            rows = cur.fetchall()
    else:
        c = sqlite3.connect(deployment.tmp / "data" / "kefu.sqlite3")
        try:
            rows = c.execute(q).fetchall()
        finally:
            c.close()
    return [dict(zip(("id", "openid", "sender", "cmid", "body"), r, strict=True)) for r in rows]


def wait_stored(deployment, count: int, timeout: float = 20.0) -> list[dict]:  # type: ignore[no-untyped-def]
    """Poll until at least `count` messages are stored (the writer is asynchronous by design)."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = stored_messages(deployment)
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    return rows
