"""What every benchmark shares: a real kefu on 127.0.0.1 with its own database and Redis prefix,
removed afterwards, and the arithmetic of the report."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "server")]

from tests.support import services  # noqa: E402
from tests.support.server import KefuServer  # noqa: E402

BACKENDS = ["embedded", "redis_mysql"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    """The p-quantile of durations in seconds, in milliseconds."""
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


# Every bench client comes from 127.0.0.1: lift the per-address caps (docs/security.md).
BENCH_LIMITS = {"KEFU_MAX_SOCKETS_PER_IP": "100000", "KEFU_QRCODE_PER_MINUTE": "100000",
                "KEFU_QRCODE_LIVE_PER_IP": "100000"}


@contextmanager
def bench_server(backend: str, **env: str) -> Iterator[KefuServer]:
    """A started server on `backend` with rate limits out of the way; stopped and cleaned up after."""
    tmp = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
    env = {"KEFU_DATA_DIR": str(tmp), "KEFU_RATE_PER_SEC": "1000", "KEFU_RATE_BURST": "1000",
           "KEFU_LOG_LEVEL": "WARNING", **BENCH_LIMITS, **env}
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
        yield srv
    finally:
        srv.stop()
        if db:
            services.drop_database(db)
        if prefix:
            services.drop_redis_prefix(prefix)
