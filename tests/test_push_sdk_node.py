"""The push SDK (web_sdk/push.js) headless under Node: its state machine against a fake socket and
clock (tests/web_sdk/unit/). No npm packages are needed. The SDK against real servers, in Chromium,
is tests/test_push_pages.py."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.server import ROOT


def test_push_sdk_headless_with_fakes() -> None:
    node = shutil.which("node")
    assert node, "node (v20+) is not on PATH: the push SDK tests run under Node"
    r = subprocess.run([node, "--test", str(ROOT / "tests" / "web_sdk" / "unit")], cwd=ROOT,
                       env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"--- stdout ---\n{r.stdout[-20000:]}\n--- stderr ---\n{r.stderr[-5000:]}"
