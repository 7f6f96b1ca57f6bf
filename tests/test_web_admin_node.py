"""The console's headless client (web_admin/js/client/) under Node.

`tests/web_admin/unit/` drives it with a fake WebSocket, fetch and clock (no server: run once);
`tests/web_admin/live/` against a real `kefu serve` that the Node harness of the mini-program tests
starts and restarts itself, on both backends (running `kefu migrate` first when MYSQL_URL is set).
No npm packages are needed: Node's own fetch and WebSocket (behind `--experimental-websocket` on
Node 20) are the browser's APIs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import ARTIFACTS, Deployment
from tests.support.node_run import run_node
from tests.support.server import ROOT

TESTS = ROOT / "tests" / "web_admin"


def _node() -> str:
    node = shutil.which("node")
    assert node, "node (v20+) is not on PATH: the console client tests run under Node"
    return node


def _websocket_flag(node: str) -> list[str]:
    """Node 22+ has a global WebSocket; Node 20 needs the flag (and newer ones may not know it)."""
    r = subprocess.run([node, "-p", "typeof WebSocket"], capture_output=True, text=True, timeout=30)
    return [] if r.stdout.strip() == "function" else ["--experimental-websocket"]


def test_console_client_headless_with_fakes() -> None:
    run_node([_node(), "--test", str(TESTS / "unit")], dict(os.environ), "unit tests with fakes")


def test_console_client_against_a_real_server(deployment: Deployment) -> None:
    node = _node()
    log_dir = ARTIFACTS / f"{deployment.name}-console-node"
    env = {**os.environ, **deployment.env, "KEFU_PYTHON": sys.executable,
           "KEFU_MINIPROGRAM_LOG_DIR": str(log_dir)}
    run_node([node, *_websocket_flag(node), "--test", str(TESTS / "live")], env,
             f"{deployment.backend}; server log in {log_dir}", log_dir)
