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
import sys

from tests.conftest import ARTIFACTS
from tests.support.node_run import run_node
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
    run_node([node, "--test", "tests/miniprogram/"], env,
             f"{deployment.backend}; server log in {log_dir}", log_dir)
