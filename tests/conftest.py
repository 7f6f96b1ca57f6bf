"""Fixtures: a real kefu server per test (embedded default, or Redis + MariaDB), cleaned up after."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support import services
from tests.support.server import KefuServer

ARTIFACTS = Path(os.environ.get("KEFU_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))
BACKENDS = ["embedded", "redis_mysql"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def pytest_configure(config: pytest.Config) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


class Deployment:
    """Backing services for one test: a fresh MariaDB database and Redis prefix, or a temp dir."""

    def __init__(self, backend: str, tmp: Path, name: str) -> None:
        self.backend = backend
        self.tmp = tmp
        self.name = name
        self.database: str | None = None
        self.prefix: str | None = None
        self.servers: list[KefuServer] = []
        self.env: dict[str, str] = {"KEFU_DATA_DIR": str(tmp / "data"), "KEFU_HEARTBEAT_TIMEOUT": "40",
                                    "KEFU_WRITER_CLAIM_IDLE_MS": "1000"}
        if backend == "redis_mysql":
            self.database = services.create_database()
            self.prefix = services.new_redis_prefix()
            self.env.update(MYSQL_URL=services.mysql_url(self.database), REDIS_URL=services.REDIS_URL_BASE,
                            KEFU_REDIS_PREFIX=self.prefix)

    def server(self, start: bool = True, **env: str) -> KefuServer:
        n = len(self.servers)
        srv = KefuServer({**self.env, **env}, ARTIFACTS / f"{self.name}-server{n}.log")
        self.servers.append(srv)
        if self.database and n == 0:
            srv.cli("migrate")
        if start:
            srv.start()
        return srv

    def close(self) -> None:
        for s in self.servers:
            s.stop()
        if self.database:
            services.drop_database(self.database)
        if self.prefix:
            services.drop_redis_prefix(self.prefix)


@pytest.fixture(params=BACKENDS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    safe = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
    d = Deployment(request.param, tmp_path, safe)
    yield d
    d.close()


@pytest.fixture
def redis_deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment("redis_mysql", tmp_path, request.node.name)
    yield d
    d.close()


@pytest.fixture
def server(deployment: Deployment) -> KefuServer:
    return deployment.server()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (`playwright install` cannot download browsers here)."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the end of each of its kefu servers' logs, and whether it still runs:
    in CI the artifacts directory is gone with the machine."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for name in ("deployment", "redis_deployment"):
        d = getattr(item, "funcargs", {}).get(name)
        if isinstance(d, Deployment):
            for i, s in enumerate(d.servers):
                state = "not started" if s.proc is None else f"exit code {s.proc.poll()}"
                report.sections.append((f"kefu server {i} ({state}), last log lines", s.log_tail()))
