"""What every benchmark shares: a real kefu on 127.0.0.1 with its own database and Redis prefix,
removed afterwards; CPU and memory of a process; and the arithmetic of the report."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "server")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tests.support import services  # noqa: E402
from tests.support.server import KefuServer  # noqa: E402

BACKENDS = ["embedded", "redis_mysql"]
T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (the embedded server's
    message writer is a process of its own), all their threads included."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                     for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


async def gather_limited(n: int, concurrency: int, one: Callable[[int], Awaitable[T]]) -> list[T]:
    """`one(i)` for i in range(n), at most `concurrency` at a time, results in order."""
    results: list[T | None] = [None] * n
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            results[i] = await one(i)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
    return results  # type: ignore[return-value]


def machine_busy_seconds() -> float:
    """CPU seconds all cores of this machine have spent busy so far (everything but idle and
    I/O wait), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    steal_and_guests = sum(ticks[7:])  # steal, guest, guest_nice: not work done here
    return (sum(ticks) - idle - steal_and_guests) / CLOCK_TICKS


def pct(values: list[float], p: float) -> float:
    """The p-quantile of durations in seconds, in milliseconds (0 for no values)."""
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


# Every bench client comes from 127.0.0.1: lift the per-address caps (docs/security.md).
BENCH_LIMITS = {"KEFU_MAX_SOCKETS_PER_IP": "100000", "KEFU_MAX_QR_SOCKETS": "10000",
                "KEFU_QRCODE_PER_MINUTE": "100000", "KEFU_QRCODE_LIVE_PER_IP": "100000"}


class Recorder(Protocol):
    """A profiler attached to the server for the load phase (bench.profile.Recording)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Usage:
    wall: float
    generator_cpu: float  # this process's CPU seconds / wall seconds (1.0 = one core)
    server_cpu: float
    others_cpu: float  # every other process on the machine: how shared it was meanwhile


class Meter:
    """CPU of the load generator (this process) and of the server over one load phase.

    The generator runs on one event loop, so it can use at most one core: when its share comes
    near 1.0 the rate measures the generator, and the benchmark refuses to report it.
    """

    def __init__(self, server_pid: int, recording: Recorder | None = None) -> None:
        self.server_pid = server_pid
        self.recording = recording
        self.usage: Usage | None = None

    def __enter__(self) -> Meter:
        if self.recording is not None:
            self.recording.start()
        self._t0, self._gen0 = time.perf_counter(), time.process_time()
        self._srv0, self._all0 = cpu_seconds(self.server_pid), machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        gen = (time.process_time() - self._gen0) / wall
        srv = (cpu_seconds(self.server_pid) - self._srv0) / wall
        others = (machine_busy_seconds() - self._all0) / wall - gen - srv
        self.usage = Usage(wall, gen, srv, max(0.0, others))
        if self.recording is not None:
            self.recording.stop()


@dataclass
class KefuDeployment:
    server: KefuServer
    data_dir: Path
    database: str | None  # its own MariaDB database; None on the embedded default (SQLite in data_dir)


@contextmanager
def bench_server(backend: str, **env: str) -> Iterator[KefuDeployment]:
    """A started server on `backend` with rate limits out of the way; stopped and cleaned up after.

    Heartbeats are relaxed to 300 s so that idle sockets stay for the whole measurement.
    """
    tmp = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
    env = {"KEFU_DATA_DIR": str(tmp), "KEFU_RATE_PER_SEC": "1000", "KEFU_RATE_BURST": "1000",
           "KEFU_HEARTBEAT_TIMEOUT": "300", "KEFU_LOG_LEVEL": "WARNING", **BENCH_LIMITS, **env}
    db = prefix = None
    if backend == "redis_mysql":
        db, prefix = services.create_database(), services.new_redis_prefix()
        env |= {"MYSQL_URL": services.mysql_url(db), "REDIS_URL": services.REDIS_URL_BASE,
                "KEFU_REDIS_PREFIX": prefix}
    srv = KefuServer(env, tmp / "server.log")
    try:
        if db:
            srv.cli("migrate")
        srv.start()
        yield KefuDeployment(srv, tmp, db)
    finally:
        srv.stop()
        if db:
            services.drop_database(db)
        if prefix:
            services.drop_redis_prefix(prefix)
        shutil.rmtree(tmp, ignore_errors=True)
