"""/metrics with several workers: every scrape reads the whole machine (prometheus_client's
multiprocess mode), on its own bind, never on the public port; old samples are wiped at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from kefu import metrics
from tests.support.server import KefuServer, free_port
from tests.support.wsclient import WsClient

USERS = 16
PINGS = 3


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def per_worker(metrics_dir: Path, name: str) -> dict[str, float]:
    """What each process's own file says: `counter_<pid>.db` → that pid's count."""
    out = {}
    for f in metrics_dir.glob("counter_*.db"):
        pid = f.stem.split("_")[1]
        for fam in MultiProcessCollector.merge([str(f)]):
            for s in fam.samples:
                if s.name == name:
                    out[pid] = out.get(pid, 0.0) + s.value
    return out


def gauge_of(metrics_dir: Path, pid: str, name: str) -> float:
    [fam] = [f for f in MultiProcessCollector.merge([str(p) for p in metrics_dir.glob(f"gauge_*_{pid}.db")])
             if f.name == name]
    return sum(s.value for s in fam.samples)


def leave_a_stale_sample(metrics_dir: Path) -> None:
    """An earlier run's file, as a crashed server would leave it: 1000 frames."""
    code = ("from prometheus_client import Counter; "
            "Counter('kefu_frames_in_total', 'stale').inc(1000)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert list(metrics_dir.glob("counter_*.db"))


async def test_a_counter_counted_on_every_worker_reads_the_same_total_on_every_scrape(redis_deployment,
                                                                                     tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    leave_a_stale_sample(metrics_dir)
    mport = free_port()
    srv: KefuServer = redis_deployment.server(
        start=False, KEFU_WORKERS="2", KEFU_METRICS_PORT=str(mport), KEFU_METRICS_DIR=str(metrics_dir),
        KEFU_PUSH_PORT="0")
    await asyncio.to_thread(srv.start)
    assert scrape(mport)[("kefu_frames_in_total", ())] == 0  # the stale 1000 are gone

    users = []
    for i in range(USERS):  # the kernel spreads the connections over both workers
        token, _ = await asyncio.to_thread(srv.user_token, f"metrics-user-{i}")
        users.append(await WsClient.connect(srv.ws_url, token))
    for u in users:
        for _ in range(PINGS):
            await u.send({"cmd": "ping"})
    for u in users:
        for _ in range(PINGS):
            assert (await u.recv_until(lambda f: f.get("cmd") == "pong"))["cmd"] == "pong"

    counts = per_worker(metrics_dir, "kefu_frames_in_total")
    assert len([c for c in counts.values() if c > 0]) == 2, f"both workers counted: {counts}"
    assert sum(counts.values()) == USERS * PINGS
    for _ in range(6):  # whichever worker would have answered, every scrape sees the machine
        m = scrape(mport)
        assert m[("kefu_frames_in_total", ())] == USERS * PINGS
        assert m[("kefu_connections", (("role", "user"),))] == USERS
        for name in ("kefu_journal_pending", "kefu_broker_reconnects_total", "kefu_write_errors_total",
                     "kefu_messages_stored_total"):
            assert any(key[0] == name for key in m), name

    # A worker killed with -9 cannot clean up: the next scrape forgets its sockets.
    killed, survivor = sorted(pid for pid, c in counts.items() if c > 0)
    os.kill(int(killed), signal.SIGKILL)
    await asyncio.sleep(0.5)
    survivor_own = gauge_of(metrics_dir, survivor, "kefu_connections")
    assert 0 < survivor_own < USERS
    assert scrape(mport)[("kefu_connections", (("role", "user"),))] == survivor_own
    assert not list(metrics_dir.glob(f"gauge_live*_{killed}.db"))

    for u in users:
        await u.close()
    for _ in range(50):
        if scrape(mport)[("kefu_connections", (("role", "user"),))] == 0:
            break
        await asyncio.sleep(0.1)
    assert scrape(mport)[("kefu_connections", (("role", "user"),))] == 0
    # the public port does not serve /metrics
    assert httpx.get(srv.base_url + "/metrics").status_code == 404
    srv.stop()
    assert not list(metrics_dir.glob("gauge_live*.db")), "stopped workers remove their live gauges"


def test_a_forked_process_counts_in_a_file_of_its_own(tmp_path: Path) -> None:
    """kefu caches the pid the multiprocess values check on every update; a fork must still move
    the child's counts to its own file, as prometheus_client's own check does."""
    script = """
import os, sys
from kefu import metrics
metrics.MESSAGES_STORED.inc(2)
child = os.fork()
if child == 0:
    metrics.MESSAGES_STORED.inc(5)
    os._exit(0)
os.waitpid(child, 0)
metrics.MESSAGES_STORED.inc(1)
print(os.getpid(), child)
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    parent, child = out
    assert per_worker(tmp_path, "kefu_messages_stored_total") == {parent: 3.0, child: 5.0}


async def test_a_tally_adds_one_iterations_increments_at_its_end() -> None:
    """Per-message counters are summed over a loop iteration: one multiprocess write, not one each."""
    added: list[float] = []

    class Counted:
        def inc(self, n: float = 1) -> None:
            added.append(n)

    tally = metrics.Tally(Counted())  # type: ignore[arg-type]
    for _ in range(3):
        tally.inc()
    assert added == []
    await asyncio.sleep(0)
    assert added == [3]
    tally.inc()
    await asyncio.sleep(0)
    assert added == [3, 1]
