"""Running the `kefu` command the way an operator does: a clean environment, any directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.server import ROOT, free_port

#: One log line as kefu writes it: ISO time with offset, level, [pid], logger: message.
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) "
                      r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) \[(\d+)\] ([\w.]+): (.*)$")
_OURS = re.compile(r"^(KEFU_|MYSQL_URL$|REDIS_URL$|PROMETHEUS_MULTIPROC_DIR$)")


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any kefu setting, plus `settings`; private ports so a
    default never collides with another server on the machine."""
    env = {k: v for k, v in os.environ.items() if not _OURS.match(k)}
    env.update({"PYTHONUNBUFFERED": "1", "KEFU_PORT": str(free_port()),
                "KEFU_PUSH_PORT": str(free_port()), "KEFU_METRICS_PORT": str(free_port())})
    env.update(settings)
    return env


def kefu(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 60,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kefu", *args], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"kefu exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
