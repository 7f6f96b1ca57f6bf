"""Running a Node test suite against a real server and failing with everything needed to see why:
Node's output, and the server log's warnings, errors and last lines (CI keeps only the output)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT


def server_log_excerpt(log_dir: Path, tail: int = 40) -> str:
    """Every warning and error of the logs in `log_dir`, then their last `tail` lines."""
    out = []
    for log in sorted(log_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        notable = [line for line in lines
                   if (" WARNING " in line or " ERROR " in line) and "SANDBOX" not in line]
        out.append(f"--- {log.name}: warnings and errors ---\n" + "\n".join(notable[-60:]))
        out.append(f"--- {log.name}: last {tail} lines ---\n" + "\n".join(lines[-tail:]))
    return "\n".join(out)


def run_node(args: list[str], env: dict[str, str], what: str, log_dir: Path | None = None) -> None:
    """Run `args` (node and its arguments) from the repository's root; fail with its output."""
    logs = (lambda: server_log_excerpt(log_dir)) if log_dir is not None else (lambda: "")
    try:
        r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{what} timed out:\n{e.stdout or ''}\n{e.stderr or ''}\n{logs()}") from e
    if r.returncode != 0:
        print(r.stdout)
        print(r.stderr, file=sys.stderr)
    assert r.returncode == 0, (
        f"{' '.join(args[1:])} exited with {r.returncode} ({what})\n"
        f"--- stdout ---\n{r.stdout[-20000:]}\n--- stderr ---\n{r.stderr[-5000:]}\n{logs()}")
