"""A real `kefu serve` process for tests, with the same environment a deployment would use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KefuServer:
    """Start, stop, kill -9 and restart one server; the port and data stay across restarts."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = int(env.get("KEFU_PORT") or free_port())
        self.env = {**os.environ, "KEFU_HOST": "127.0.0.1", "KEFU_PORT": str(self.port),
                    "PYTHONUNBUFFERED": "1", **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kefu", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, check=check, timeout=60)

    def start(self, timeout: float = 30.0) -> None:
        """Return once every worker serves: the first one's answer to /healthz says nothing of the
        others, which may still be starting (and would fail if a test cut a dependency now)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it
        since = log.tell()
        logged = self.env.get("KEFU_LOG_LEVEL", "INFO").upper() in ("DEBUG", "INFO")
        workers = int(self.env.get("KEFU_WORKERS") or 1) if logged else 0
        self.proc = subprocess.Popen([sys.executable, "-m", "kefu", "serve"], env=self.env, cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kefu exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if (self._serving_since(since) >= workers
                        and httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"kefu did not become ready:\n{self.log_tail()}")

    def _serving_since(self, offset: int) -> int:
        """How many workers have logged that they serve since `offset` in the log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().count(b" serving http://")
        except OSError:
            return 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def create_agent(self, name: str, password: str = "correct-horse-1") -> None:
        self.cli("create-agent", name, "--password", password)

    def agent_token(self, name: str, password: str = "correct-horse-1") -> str:
        r = httpx.post(self.base_url + "/api/agent/login", json={"name": name, "password": password})
        r.raise_for_status()
        return r.json()["token"]

    def user_token(self, code: str) -> tuple[str, str]:
        """Sandbox login: the code decides the openid. Returns (token, openid)."""
        r = httpx.post(self.base_url + "/api/login", json={"code": code})
        r.raise_for_status()
        return r.json()["token"], r.json()["openid"]
