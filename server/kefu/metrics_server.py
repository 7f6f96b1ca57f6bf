"""`/metrics` on its own bind, correct with any number of workers.

Every worker writes its samples to memory-mapped files in one directory (prometheus_client's
multiprocess mode); the process that runs `kefu serve` answers scrapes from a thread and merges the
files, so each scrape reads the whole machine, whichever worker counted. The directory must be named
in `PROMETHEUS_MULTIPROC_DIR` before prometheus_client is first imported in any process, which is
why `prepare` imports nothing of it and runs before the app is loaded; workers inherit the variable.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kefu.config import Settings

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def prepare(settings: Settings) -> Path | None:
    """Point this process and its workers at an empty multiprocess directory; None if metrics are
    off. `KEFU_METRICS_DIR` is emptied of old samples; without it a private temporary directory is
    made and removed at exit."""
    if not settings.metrics_port:
        os.environ.pop(ENV, None)
        return None
    if settings.metrics_dir is not None:
        path = settings.metrics_dir
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="kefu-metrics-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[ENV] = str(path)
    return path


class _ForgetDeadWorkers:
    """Before each scrape, drop the `live*` gauge files of workers that are gone (killed with -9, so
    they could not clean up themselves): their sockets and queues no longer exist."""

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> list[object]:
        return []

    def collect(self) -> list[object]:
        from prometheus_client import multiprocess

        for name in os.listdir(self.path):
            m = _LIVE_FILE.fullmatch(name)
            if m and not _alive(int(m.group(1))):
                multiprocess.mark_process_dead(int(m.group(1)), self.path)
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def registry() -> CollectorRegistry:
    """The registry a scrape reads: every worker's files in multiprocess mode, else this process."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    path = os.environ.get(ENV)
    if not path:
        return REGISTRY
    reg = CollectorRegistry()
    reg.register(_ForgetDeadWorkers(path))  # type: ignore[arg-type]
    multiprocess.MultiProcessCollector(reg, path)
    return reg


def start(settings: Settings) -> object:
    """Serve `/metrics` on KEFU_METRICS_HOST:KEFU_METRICS_PORT from a daemon thread of this process.
    Raises OSError if the port cannot be bound."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(settings.metrics_port, settings.metrics_host, registry())
    return server


def process_exit() -> None:
    """A process (worker or main) that stops cleanly removes its live gauges at once."""
    path = os.environ.get(ENV)
    if path and os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), path)
