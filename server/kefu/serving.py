"""`kefu serve` (foreground or `--background`) and `kefu stop`.

The foreground path checks the dependencies and the ports first, so the usual start-up failures
are one line (preflight.py) instead of a worker's traceback; then it opens the metrics bind in this
process and hands over to Sanic. `--background` runs the same command as a child with its output
in a log file, returns once `/readyz` answers 200, and leaves a pid file for `kefu stop`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import httpx
from sanic import Sanic

from kefu import metrics_server, preflight
from kefu.config import Settings
from kefu.preflight import DependencyDown, say

log = logging.getLogger("kefu")

PORT_HINT = "choose another with `kefu serve --port N` or KEFU_PORT"
METRICS_HINT = "choose another with KEFU_METRICS_PORT (0 turns /metrics off)"


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host` (a wildcard means loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def base_url(settings: Settings) -> str:
    host = connect_host(settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / "kefu.pid"


def check_before_serving(settings: Settings) -> None:
    """Dependencies answer and the HTTP port is free, or a StartupError says which is not."""
    preflight.check_database(settings)
    preflight.check_redis(settings)
    preflight.check_port(settings.host, settings.port, "the HTTP port", PORT_HINT)


def start_metrics(settings: Settings) -> None:
    """The metrics bind. Production refuses to run without it; dev logs the reason and goes on."""
    if not settings.metrics_port:
        log.info("metrics off (KEFU_METRICS_PORT=0)")
        return
    try:
        metrics_server.start(settings)
    except OSError as e:
        err = preflight.port_error(settings.metrics_host, settings.metrics_port, "the metrics port",
                                   METRICS_HINT, e)
        if settings.env == "production":
            raise err from None
        log.error("%s; /metrics is off in this run", str(err).removeprefix("kefu: "))
        return
    log.info("metrics on http://%s:%s/metrics (all workers)", settings.metrics_host, settings.metrics_port)


def stop_signals_from_the_monitor_loop(app: Sanic) -> None:
    """Make SIGTERM/SIGINT in the main process stop the workers safely. Sanic's own handler has two
    races: it updates the worker states it shares with a multiprocessing manager from inside the
    signal handler, which deadlocks the main process when the signal lands while the main loop is
    talking to that manager; and it signals workers that are still starting, which a worker cannot
    handle before it installs its own handlers (it then never stops). So the handler only starts a
    thread that waits until every worker serves, then asks the monitor loop to stop
    (`__TERMINATE__`), which stops the workers from the main loop. A second signal a second or
    more later goes to Sanic's handler (kill the workers); one sooner is the same stop twice (a
    signal sent to the whole process group)."""
    manager = app.manager
    first: float | None = None

    def when_serving() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                states = [s for s in manager.worker_state.values() if s.get("server")]
                if len(states) >= manager.num_server and all(
                        s.get("serving") or s.get("state") in ("FAILED", "COMPLETED", "TERMINATED")
                        for s in states):
                    break
            time.sleep(0.05)
        manager.monitor_publisher.send("__TERMINATE__")

    def handler(signum: int, frame: object) -> None:
        nonlocal first
        if first is None:
            first = time.monotonic()
            log.info("received %s: stopping", signal.Signals(signum).name)
            threading.Thread(target=when_serving, name="kefu-stop", daemon=True).start()
        elif time.monotonic() - first >= 1.0:
            manager.shutdown_signal(signum, frame)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def stop_leftover_workers(timeout: float = 10.0) -> None:
    """A stop that lands just as the last worker reports ready can miss that worker (Sanic signals
    it before it handles signals); stop whatever is still running rather than leave it behind."""
    leftovers = multiprocessing.active_children()
    for proc in leftovers:
        log.warning("worker %s still running after shutdown; stopping it", proc.pid)
        proc.terminate()
    for proc in leftovers:
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()


def worker_app(settings: Settings) -> Sanic:
    """The app, built in each process that loads it. A worker first leaves the group it was born in:
    Sanic ends a failed start or an interrupted shutdown with `killpg` on each worker's process group,
    which is otherwise the group of whatever started kefu (a shell script, a supervisor, a test run)."""
    from kefu.app import create_app

    if os.environ.get("SANIC_WORKER_NAME"):  # set only in worker processes
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
    return create_app(settings)


def serve(settings: Settings) -> None:
    check_before_serving(settings)
    metrics_server.prepare(settings)  # before anything imports prometheus_client
    from sanic.worker.loader import AppLoader

    from kefu.ws.transport import KefuWebSocketProtocol

    if settings.wechat_mode == "sandbox":
        log.warning("WeChat SANDBOX login is on: any code logs in (dev only; refused when "
                    "KEFU_ENV=production)")
    if not settings.mysql_url:
        from kefu import migrate

        migrate.upgrade(settings)  # once, here: workers that each migrate a new SQLite file race
    start_metrics(settings)
    loader = AppLoader(factory=partial(worker_app, settings))
    app = loader.load()
    single = settings.workers == 1
    app.prepare(host=settings.host, port=settings.port, workers=settings.workers,
                single_process=single, motd=False, access_log=settings.access_log,
                protocol=KefuWebSocketProtocol, backlog=settings.backlog)
    log.info("starting %d worker(s) on %s", settings.workers, base_url(settings))
    try:
        if single:
            Sanic.serve_single(primary=app)
        else:
            app.main_process_ready(lambda app, _loop: stop_signals_from_the_monitor_loop(app))
            Sanic.serve(primary=app, app_loader=loader)
            stop_leftover_workers()
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise preflight.port_error(settings.host, settings.port, "the HTTP port", PORT_HINT,
                                       e) from None
        raise
    finally:
        metrics_server.process_exit()
    log.info("stopped")


def _running(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is alive."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def serve_background(settings: Settings, argv: list[str], wait: float) -> None:
    """Start `kefu serve <argv>` detached; return once it is ready (or say why it is not)."""
    pidfile = pid_file(settings)
    pid = _running(pidfile)
    if pid is not None:
        raise DependencyDown(f"kefu: already running (pid {pid}, {pidfile}); `kefu stop` first")
    check_before_serving(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logfile = settings.data_dir / "kefu.log"
    with open(logfile, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "kefu", "serve", *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(f"{child.pid}\n")
    url = base_url(settings) + "/readyz"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pidfile.unlink(missing_ok=True)
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
            raise DependencyDown(f"{tail}\nkefu: the server exited with {child.returncode} "
                                 f"(log: {logfile})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                say(f"kefu: ready on {base_url(settings)} (pid {child.pid}; log {logfile}; "
                    "stop with `kefu stop`)")
                return
        time.sleep(0.2)
    raise DependencyDown(f"kefu: not ready after {wait:g}s (pid {child.pid}, still running; log: "
                         f"{logfile})")


def stop(settings: Settings, wait: float = 30.0) -> None:
    pidfile = pid_file(settings)
    pid = _running(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        raise DependencyDown(f"kefu: no server started with --background is running ({pidfile})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _running(pidfile) is not None:
        time.sleep(0.1)
    if _running(pidfile) is not None:
        raise DependencyDown(f"kefu: pid {pid} still runs {wait:g}s after SIGTERM")
    pidfile.unlink(missing_ok=True)
    say(f"kefu: stopped (pid {pid})")

