"""Logs with several workers on Redis + MariaDB: every worker's lines carry time, level and pid, each
event prints once, the events operators watch appear, and no token ever reaches the log — not at
DEBUG, not in the access log. Plus the scrubbing rules themselves and the JSON line format."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.ops import LOG_LINE, clean_env
from tests.support.qrflow import PushClient, new_qr, open_page, push_port, sandbox_env
from tests.support.server import ROOT, KefuServer, free_port
from tests.support.wsclient import WsClient


@pytest.mark.parametrize(("raw", "shown"), [
    ("GET http://h/ws?token={t}&v=2", "GET http://h/ws?token=***&v=2"),
    ("GET /cgi-bin/qrcode/create?access_token={t}", "GET /cgi-bin/qrcode/create?access_token=***"),
    ("headers: Authorization: Bearer {t}", "headers: Authorization: Bearer ***"),
    ("X-Api-Key: {t}", "X-Api-Key: ***"),
    ('pushed {{"uid":"u1","token":"{t}"}}', 'pushed {{"uid":"u1","token":"***"}}'),
    ("{{'secret': '{t}'}}", "{{'secret': '***'}}"),
    ("redis://:{t}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("token lookup failed for {t}", "token lookup failed for ***"),
    ("> TEXT '{{\"cmd\":\"hello\",...{tail}\"}}' [112 bytes]", "> TEXT '…' [112 bytes]"),
])
def test_the_scrubber_hides_every_form_a_token_takes(raw, shown):
    from kefu.logs import scrub

    token = secrets.token_urlsafe(32)
    assert scrub(raw.format(t=token, tail=token[-20:])) == shown.format()


def test_the_scrubber_leaves_ordinary_text_alone():
    from kefu.logs import scrub

    text = ("QR login for uid 0123456789abcdef0123 pushed (1 node(s)); digest "
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08; "
            "openid sbx_0123456789abcdef01234567")
    assert scrub(text) == text


def _lines(path: Path, offset: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


async def test_every_worker_logs_each_event_once_with_time_and_level_and_never_a_token(redis_deployment):
    d = redis_deployment
    srv = d.server(start=False, **sandbox_env(KEFU_WORKERS="2", KEFU_ACCESS_LOG="true",
                                              KEFU_LOG_LEVEL="DEBUG", KEFU_METRICS_PORT=str(free_port())))
    offset = srv.log_path.stat().st_size if srv.log_path.exists() else 0
    await asyncio.to_thread(srv.start)
    await asyncio.to_thread(srv.create_agent, "log-agent")
    tokens = [await asyncio.to_thread(srv.agent_token, "log-agent")]
    agent = await WsClient.connect(srv.ws_url, tokens[0])
    users = []
    for i in range(6):  # enough sockets that both workers hold some
        token, _ = await asyncio.to_thread(srv.user_token, f"log-user-{i}")
        tokens.append(token)
        users.append(await WsClient.connect(srv.ws_url, token))
        await users[-1].send({"msg": f"hello {i}", "type": 2, "cmid": f"c{i}"})
        assert (await users[-1].recv_until(lambda f: f.get("cmd") == "ack"))["cmid"] == f"c{i}"
    r = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {tokens[1]}"})
    assert r.status_code == 200
    # a QR login pushes a fresh token to the page
    qr = await asyncio.to_thread(new_qr, srv)
    page = await open_page(srv, qr)
    scan = {"ticket": qr["ticket"], "uid": qr["uid"]}  # the uid too: either worker may take it
    assert httpx.post(srv.base_url + "/dev/simulate-scan", json=scan).status_code == 200
    login = await page.recv_until(lambda f: "token" in f)
    tokens.append(login["token"])
    # a push line the port refuses
    php = await PushClient.connect(push_port(srv))
    assert await php.send({"uid": qr["uid"], "ticket": "", "hello": "empty ticket"}) == "fail\n"
    await php.close()
    # Sanic ends a failed start with killpg on each worker's group: that group must not be ours
    started = re.findall(r"Worker ready \[(\d+)\]", "\n".join(_lines(srv.log_path, offset)))
    assert len(started) == 2
    for pid in map(int, started):
        assert os.getpgid(pid) == pid != os.getpgrp()
    for s in [agent, page, *users]:
        await s.close()
    assert await asyncio.to_thread(srv.stop) == 0

    lines = _lines(srv.log_path, offset)
    text = "\n".join(lines)
    bad = [ln for ln in lines if not LOG_LINE.match(ln)]
    assert not bad, f"lines without time, level and pid: {bad[:5]}"
    for token in tokens:
        assert token not in text and token[-16:] not in text and token[:16] not in text
    parsed = [LOG_LINE.match(ln).groups() for ln in lines]  # type: ignore[union-attr]
    workers = {pid for _, _, pid, _, msg in parsed if " serving http://" in msg}
    assert len(workers) == 2
    for pid in workers:
        ready = [msg for _, _, p, logger, msg in parsed if p == pid and msg == f"Worker ready [{pid}]"]
        assert len(ready) == 1, "each event is printed once"
        assert any(p == pid and logger == "sanic.access" for _, _, p, logger, _ in parsed), \
            f"worker {pid} handled no request"
    access = [msg for _, _, _, logger, msg in parsed if logger == "sanic.access"]
    assert any("/ws?token=***&v=2" in a for a in access)  # the token was there, and scrubbed
    assert any("QR login for uid" in msg and "pushed" in msg for *_, msg in parsed)
    assert any(level == "INFO" and msg.startswith("push line refused:") for _, level, _, _, msg in parsed)
    assert any(msg.startswith("database mysql://") and "redis redis://" in msg for *_, msg in parsed)
    assert sum(1 for *_, msg in parsed if msg.startswith("worker ") and msg.endswith(" stopped")) == 2


async def test_json_lines_for_log_shippers(tmp_path):
    env = clean_env(KEFU_DATA_DIR=str(tmp_path), KEFU_LOG_FORMAT="json", KEFU_ACCESS_LOG="true")
    srv = KefuServer(env, tmp_path / "json.log")
    await asyncio.to_thread(srv.start)
    token, _ = await asyncio.to_thread(srv.user_token, "json-user")
    user = await WsClient.connect(srv.ws_url, token)
    await user.close()
    assert srv.stop() == 0
    time.sleep(0.1)
    records = [json.loads(ln) for ln in (tmp_path / "json.log").read_text().splitlines()]
    assert {"time", "level", "logger", "pid", "message"} <= set(records[0])
    assert any(r["logger"] == "sanic.access" and "token=***" in r["message"] for r in records)
    assert token not in (tmp_path / "json.log").read_text()


def test_sanic_error_lines_and_tracebacks_are_scrubbed_too(tmp_path):
    """Sanic's error logger, with a token in the message and in the exception's traceback, through
    the handler kefu installs (in a fresh process, as a worker would have it)."""
    token = secrets.token_urlsafe(32)
    code = f"""
import logging
from kefu.config import Settings
from kefu.logs import configure
configure(Settings(data_dir={str(tmp_path)!r}))
try:
    raise ValueError("no session for Bearer {token}")
except ValueError:
    logging.getLogger("sanic.error").exception("Exception occurred while handling uri: %r",
                                               "http://h/ws?token={token}&v=2")
logging.getLogger("kefu.somewhere").warning("{{'token': '{token}'}}")
"""
    env = clean_env()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert token not in r.stderr
    first = r.stderr.splitlines()[0]
    assert LOG_LINE.match(first) and "sanic.error: Exception occurred while handling uri:" in first
    assert "ws?token=***&v=2" in first
    assert "ValueError: no session for Bearer ***" in r.stderr  # the traceback, scrubbed
    assert "{'token': '***'}" in r.stderr
