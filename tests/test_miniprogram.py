"""The sample mini-program (miniprogram/) under Node against a real server, on both backends.

`node --test tests/miniprogram/` runs the real utils/kefu.js and page logic with a `wx` shim backed
by a real WebSocket/HTTP client; the Node harness starts, restarts and stops `kefu serve` itself
(running `kefu migrate` first when MYSQL_URL is set). The same run drives the client against a
scripted server (harness/fakekefu.js) for frames and close codes a real server does not send yet.
Needs `npm ci --prefix tests/miniprogram` (scripts/test runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import ARTIFACTS
from tests.support.server import ROOT

HARNESS = ROOT / "tests" / "miniprogram"


def test_miniprogram_under_node(deployment):
    node = shutil.which("node")
    assert node, "node (v20+) is not on PATH: the mini-program tests run under Node"
    assert (HARNESS / "node_modules" / "ws").is_dir(), (
        f"{HARNESS}/node_modules is missing: run `npm ci --prefix tests/miniprogram` (scripts/test does)")
    log_dir = ARTIFACTS / f"{deployment.name}-node"
    env = {**os.environ, **deployment.env, "KEFU_PYTHON": sys.executable,
           "KEFU_MINIPROGRAM_LOG_DIR": str(log_dir)}
    try:
        r = subprocess.run([node, "--test", "tests/miniprogram/"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"node --test timed out:\n{e.stdout or ''}\n{e.stderr or ''}") from e
    if r.returncode != 0:
        print(r.stdout)
        print(r.stderr, file=sys.stderr)
    assert r.returncode == 0, (
        f"node --test tests/miniprogram/ exited with {r.returncode} ({deployment.backend}); "
        f"server log in {log_dir}\n--- stdout ---\n{r.stdout[-20000:]}\n--- stderr ---\n{r.stderr[-5000:]}")
