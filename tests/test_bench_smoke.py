"""`python -m bench` runs end to end in its smallest configuration, against real servers.

A smoke test of the command and its table, never of speed: no number is compared with a
threshold. The generator limit is lifted for the table test because tiny runs against the fast
peers can keep the generator busy on a loaded machine; the refusal itself is tested on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.report import ROWS

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "--smoke", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_smallest_run_prints_every_row_for_every_target() -> None:
    r = bench("--generator-limit", "100")
    assert r.returncode == 0, r.stderr[-4000:]
    rows = table_rows(r.stdout)
    assert rows[""] == ["peer", "kefu embedded", "× peer", "kefu Redis+MariaDB", "× peer"]
    for row in ROWS:
        assert row.label in rows, f"missing row {row.label!r} in:\n{r.stdout}"
        peer, embedded, _, redis, _ = rows[row.label]
        assert embedded and redis, f"{row.label}: {rows[row.label]}"
        if row.key != "stored_once":
            assert peer, f"{row.label}: no peer value"
        if not row.check:
            float(embedded.split("–")[0])  # a number, not a placeholder
    assert rows["relay: lost"] == ["0", "0", "", "0", ""]
    assert rows["relay: duplicated"] == ["0", "0", "", "0", ""]
    assert rows["relay: every acked row stored once"][1::2] == ["yes", "yes"]
    assert "Workerman" in r.stdout and "not available" in r.stdout
    assert "plain websockets push server" in r.stdout and "no-durability relay floor" in r.stdout


def test_it_refuses_to_report_when_the_generator_is_over_its_limit() -> None:
    r = bench("--scenarios", "relay", "--targets", "peer", "--generator-limit", "0")
    assert r.returncode == 3, (r.stdout, r.stderr[-4000:])
    assert "refusing to report" in r.stderr and "generator" in r.stderr
    assert "| relay:" not in r.stdout  # no table at all


async def test_the_push_peer_speaks_the_seed_dialect() -> None:
    """Bare-uid and QR-frame binds; `ok` only for a bound uid with its ticket (the peer's rules)."""
    import asyncio
    import json

    from bench.targets import started
    from bench.wire import close_all, push_connect, ws_connect

    async with started("peer", "push", max_seconds=60) as peer:
        assert peer.push_port is not None
        bare = await ws_connect("127.0.0.1", peer.port, "/")
        bare.send_text(b"u-bare")
        framed = await ws_connect("127.0.0.1", peer.port, "/ws/qr")
        bind = json.dumps({"ticket": "t+/=", "expire_seconds": 300, "uid": "u-qr"}).encode()
        framed.send_text(bind)
        assert await framed.recv() == bind  # the QR frame is echoed; a bare uid is not
        got: dict[str, list[bytes]] = {"bare": [], "qr": []}
        bare.on_text, framed.on_text = got["bare"].append, got["qr"].append
        lines = iter([{"uid": "u-bare", "n": 1}, {"uid": "u-qr", "ticket": "t+/=", "n": 2},
                      {"uid": "u-qr", "ticket": "other", "n": 3}, {"uid": "u-qr", "n": 4},
                      {"uid": "nobody", "n": 5}])

        def next_line(_: float) -> bytes | None:
            line = next(lines, None)
            return None if line is None else json.dumps(line).encode() + b"\n"

        pusher = await push_connect("127.0.0.1", peer.push_port, next_line, 1)
        pusher.start()
        await asyncio.wait_for(pusher.done, 10)
        assert pusher.transport is not None
        pusher.transport.close()
        await asyncio.sleep(0.2)
        assert (pusher.ok, pusher.fail) == (2, 3)
        assert [json.loads(f)["n"] for f in got["bare"]] == [1]
        assert [json.loads(f)["n"] for f in got["qr"]] == [2]
        await close_all([bare, framed])
