"""The `kefu` command as an operator meets it: one-line errors with the right exit codes, flags over
the environment over a `.env` file, a database path that does not follow the current directory,
`check`, `push`, and `serve --background` / `stop` — all against real processes and sockets."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import services
from tests.support.ops import LOG_LINE, clean_env, kefu, wait_ready
from tests.support.qrflow import new_qr, open_page
from tests.support.server import ROOT, KefuServer, free_port
from tests.support.wsclient import WsClient


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


@pytest.mark.parametrize(("settings", "args", "expected"), [
    ({"KEFU_PORT": "abc"}, (), ["KEFU_PORT='abc'", "valid integer"]),
    ({"KEFU_LOG_FORMAT": "xml"}, (), ["KEFU_LOG_FORMAT='xml'", "'text' or 'json'"]),
    ({"KEFU_METRICS_PORT": "-1"}, (), ["KEFU_METRICS_PORT='-1'", "greater than or equal to 0"]),
    ({"KEFU_DATA_DIR": "var"}, (), ["KEFU_DATA_DIR='var'", "absolute path"]),
    ({}, ("--port", "70000"), ["KEFU_PORT=70000", "less than or equal to 65535"]),
    ({}, ("--workers", "2"), ["KEFU_WORKERS > 1 needs REDIS_URL"]),
    ({"KEFU_ENV_FILE": "/nonexistent/kefu.env"}, (), ["KEFU_ENV_FILE='/nonexistent/kefu.env'",
                                                      "existing file"]),
])
def test_a_bad_setting_is_one_line_naming_it_its_value_and_what_is_allowed(tmp_path, settings, args,
                                                                            expected):
    env = clean_env(**{"KEFU_DATA_DIR": str(tmp_path), **settings})
    r = kefu("serve", *args, env=env, timeout=30)
    assert r.returncode == 2, r.stderr
    line = _one_line(r.stderr)
    for part in expected:
        assert part in line
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("which", ["redis", "mysql"])
def test_a_dependency_down_at_start_is_one_line_with_its_url_and_the_password_masked(tmp_path, which):
    port = free_port()  # nothing listens there
    if which == "redis":
        env = clean_env(KEFU_DATA_DIR=str(tmp_path), REDIS_URL=f"redis://:hunter2pw@127.0.0.1:{port}/0")
        shown = f"Redis redis://:***@127.0.0.1:{port}/0 is unreachable"
    else:
        env = clean_env(KEFU_DATA_DIR=str(tmp_path), MYSQL_URL=f"mysql://kefu:hunter2pw@127.0.0.1:{port}/k")
        shown = f"database mysql://kefu:***@127.0.0.1:{port}/k is unreachable"
    r = kefu("serve", env=env, timeout=30)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    first = LOG_LINE.match(lines[0])  # the server's log says which database and Redis it will use
    assert first is not None and first.group(5).startswith("database "), lines[0]
    assert shown in _one_line("\n".join(lines[1:]))
    assert "hunter2pw" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_a_taken_port_is_one_line_with_a_hint(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = kefu("serve", "--port", str(port), env=clean_env(KEFU_DATA_DIR=str(tmp_path)), timeout=30)
    assert r.returncode == 1
    line = _one_line(r.stderr.split("\n", 1)[1])
    assert f"127.0.0.1:{port} is already in use" in line and "--port" in line
    assert "Traceback" not in r.stderr


def test_production_refuses_to_run_without_its_metrics_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = clean_env(KEFU_DATA_DIR=str(tmp_path), KEFU_ENV="production", KEFU_WECHAT_MODE="real",
                        KEFU_MP_APPID="wx_a", KEFU_MP_SECRET="s",
                        KEFU_METRICS_PORT=str(taken.getsockname()[1]))
        r = kefu("serve", env=env, timeout=30)
    assert r.returncode == 1
    assert "the metrics port" in r.stderr and "KEFU_METRICS_PORT" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_embedded_database_does_not_follow_the_current_directory(tmp_path):
    env = clean_env()
    seen = set()
    for cwd in (ROOT, tmp_path, ROOT / "docs"):
        r = kefu("check", env=env, cwd=cwd)
        assert r.returncode == 0, r.stderr
        data_dir = next(ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("KEFU_DATA_DIR "))
        seen.add(data_dir)
        assert f"kefu: database sqlite {ROOT / 'var' / 'kefu.sqlite3'}; redis none" in r.stderr
    assert seen == {str(ROOT / "var")}


def test_every_command_says_which_database_and_redis_it_uses(tmp_path):
    env = clean_env(KEFU_DATA_DIR=str(tmp_path / "d"), REDIS_URL=services.REDIS_URL_BASE,
                    KEFU_REDIS_PREFIX=services.new_redis_prefix())
    expected = (f"kefu: database sqlite {tmp_path / 'd' / 'kefu.sqlite3'}; "
                f"redis {services.REDIS_URL_BASE} (prefix {env['KEFU_REDIS_PREFIX']})")
    for args in (("migrate",), ("agents",), ("create-agent", "ann", "--password", "long-enough"),
                 ("set-password", "ann", "--password", "longer-still"), ("check",), ("stop",),
                 ("push", "--openid", "nobody", "{}")):
        r = kefu(*args, env=env)
        assert r.stderr.startswith(expected), (args, r.stderr)


def test_check_prints_the_effective_settings_with_secrets_masked(tmp_path):
    db = services.create_database()
    try:
        env = clean_env(KEFU_DATA_DIR=str(tmp_path), MYSQL_URL=services.mysql_url(db),
                        REDIS_URL=services.REDIS_URL_BASE, KEFU_API_KEY="api-key-value-1",
                        KEFU_PUSH_SECRET="push-secret-value-2", KEFU_MP_SECRET="mp-secret-value-3")
        r = kefu("check", env=env)
        assert r.returncode == 1 and "has an old schema: run `kefu migrate` first" in r.stdout
        assert kefu("migrate", env=env).returncode == 0
        r = kefu("check", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        shown = dict(ln.split(None, 1) for ln in r.stdout.splitlines()
                     if ln.startswith(("KEFU_", "MYSQL", "REDIS")))
        assert shown["KEFU_API_KEY"] == shown["KEFU_PUSH_SECRET"] == shown["KEFU_MP_SECRET"] == "***"
        assert shown["KEFU_OA_SECRET"] == "(empty)" and shown["MYSQL_URL"] == services.mysql_url(db)
        assert "check database: ok" in r.stdout and "check redis: ok" in r.stdout
        assert "value-" not in r.stdout + r.stderr
    finally:
        services.drop_database(db)
    # A password in a URL is masked, and each dependency that does not answer is named.
    dead = free_port()
    env = clean_env(KEFU_DATA_DIR=str(tmp_path), MYSQL_URL=f"mysql://kefu:pw-in-url@127.0.0.1:{dead}/k",
                    REDIS_URL=f"redis://:pw-in-url@127.0.0.1:{dead}/0")
    r = kefu("check", env=env)
    assert r.returncode == 1
    assert re.search(rf"^MYSQL_URL +mysql://kefu:\*\*\*@127\.0\.0\.1:{dead}/k$", r.stdout, re.M)
    assert "check database: the database mysql://kefu:***@" in r.stdout
    assert "check redis: Redis redis://:***@" in r.stdout
    assert "pw-in-url" not in r.stdout + r.stderr


def test_settings_come_from_a_dotenv_file_with_the_environment_and_flags_winning(tmp_path):
    dotenv = tmp_path / "kefu.env"
    p_file, p_env, p_flag = free_port(), free_port(), free_port()
    dotenv.write_text(f"KEFU_PORT={p_file}\nKEFU_API_KEY=from-the-file\nKEFU_HOST=127.0.0.1\n"
                      f"KEFU_DATA_DIR={tmp_path / 'data'}\n")
    env = clean_env(KEFU_ENV_FILE=str(dotenv))
    del env["KEFU_PORT"]
    r = kefu("check", env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^KEFU_PORT +{p_file}$", r.stdout, re.M)
    assert f"settings: environment + {dotenv}" in r.stderr
    env["KEFU_PORT"] = str(p_env)
    assert re.search(rf"^KEFU_PORT +{p_env}$", kefu("check", env=env).stdout, re.M)
    # `serve --port` wins over both; the API key comes from the file.
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([sys.executable, "-m", "kefu", "serve", "--port", str(p_flag), "--host",
                             "127.0.0.1"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{p_flag}/readyz", proc)
        r = httpx.post(f"http://127.0.0.1:{p_flag}/api/push", json={"broadcast": True},
                       headers={"X-Api-Key": "from-the-file"})
        assert r.status_code == 200, r.text
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{p_env}/healthz")
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_serve_workers_flag_starts_that_many_workers(redis_deployment, tmp_path):
    d = redis_deployment
    d.server(start=False)  # migrates
    env = clean_env(**{k: v for k, v in d.env.items()})
    log_path = tmp_path / "w.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kefu", "serve", "--workers", "2"], env=env,
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{env['KEFU_PORT']}/readyz", proc)
        for _ in range(50):
            serving = {m.group(3) for ln in log_path.read_text().splitlines()
                       if (m := LOG_LINE.match(ln)) and " serving http://" in m.group(5)}
            if len(serving) == 2:
                break
            time.sleep(0.1)
        assert len(serving) == 2, log_path.read_text()
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


async def test_kefu_push_sends_one_push_over_the_port_or_http(tmp_path):
    env = clean_env(KEFU_DATA_DIR=str(tmp_path), KEFU_API_KEY="push-key-for-cli")
    srv = KefuServer(env, tmp_path / "srv.log")
    await asyncio.to_thread(srv.start)
    try:
        token, openid = await asyncio.to_thread(srv.user_token, "cli-push")
        user = await WsClient.connect(srv.ws_url, token)
        r = await asyncio.to_thread(kefu, "push", "--openid", openid, '{"msg":"your order shipped"}', env=env)
        assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
        assert (await user.recv())["msg"] == "your order shipped"
        r = await asyncio.to_thread(kefu, "push", "--http", "--openid", openid, '{"msg":"by http"}', env=env)
        assert r.returncode == 0 and json.loads(r.stdout) == {"delivered": True, "nodes": 1}
        assert (await user.recv())["msg"] == "by http"
        # nobody listens: `fail` and exit code 1
        r = await asyncio.to_thread(kefu, "push", "--openid", "nobody_here", '{"msg":"x"}', env=env)
        assert (r.returncode, r.stdout) == (1, "fail\n")
        # a QR page: uid + ticket over the port, the body from stdin
        qr = await asyncio.to_thread(new_qr, srv)
        page = await open_page(srv, qr)
        r = await asyncio.to_thread(kefu, "push", "--uid", qr["uid"], "--ticket", qr["ticket"], "-",
                                    env=env, stdin='{"hello":"world"}')
        assert r.stdout == "ok\n"
        assert await page.recv() == {"hello": "world", "uid": qr["uid"], "ticket": qr["ticket"]}
        # a body that is not JSON is a usage error
        r = await asyncio.to_thread(kefu, "push", "{not json", env=env)
        assert r.returncode == 2 and "not JSON" in r.stderr
        await user.close()
        await page.close()
    finally:
        srv.stop()


def test_serve_background_returns_when_ready_and_stop_ends_it(tmp_path):
    env = clean_env(KEFU_DATA_DIR=str(tmp_path))
    r = kefu("serve", "--background", env=env, timeout=90)
    assert r.returncode == 0, r.stderr
    url = f"http://127.0.0.1:{env['KEFU_PORT']}"
    assert f"kefu: ready on {url}" in r.stderr
    try:
        assert httpx.get(url + "/readyz").status_code == 200  # at once: it returned when ready
        again = kefu("serve", "--background", env=env)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        r = kefu("stop", env=env)
    assert r.returncode == 0 and "kefu: stopped" in r.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")
    assert "worker" in (tmp_path / "kefu.log").read_text()
    assert kefu("stop", env=env).returncode == 1


def test_two_workers_on_a_new_sqlite_file_start_and_stop_cleanly(tmp_path):
    """The schema is made once, before the workers: two workers each migrating a new file race, and
    the loser's failed start used to end the whole server."""
    prefix = services.new_redis_prefix()
    env = clean_env(KEFU_DATA_DIR=str(tmp_path), KEFU_WORKERS="2", REDIS_URL=services.REDIS_URL_BASE,
                    KEFU_REDIS_PREFIX=prefix)
    srv = KefuServer(env, tmp_path / "serve.log")
    try:
        srv.start()
        token, _ = srv.user_token("two-workers")
        r = httpx.get(srv.base_url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert srv.stop() == 0
        assert "Traceback" not in srv.log_tail(400)
    finally:
        srv.stop()
        services.drop_redis_prefix(prefix)
