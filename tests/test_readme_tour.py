"""The README's tour, run as a script in a fresh `git clone` of this checkout's committed HEAD.

It runs exactly the tour's shell lines, with two changes said out loud: its ports are replaced by
free ones (another kefu may hold 8000 on this machine), and — unless KEFU_TOUR_INSTALL=1 — the
clone's `.venv` reuses the packages of this checkout's `.venv` instead of downloading them again (a
fresh install takes about a minute): the clone's own `server/` comes first on its path and
`scripts/bootstrap` is told the install is done. With KEFU_TOUR_INSTALL=1 `scripts/serve` installs
for real, as on a new machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.ops import clean_env
from tests.support.server import ROOT


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A 60-second tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 2, "the tour has its chat and its push blocks"
    return "\n".join(blocks)


def reuse_this_venv(clone: Path) -> None:
    """A venv for the clone whose packages are this checkout's, and whose kefu is the clone's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True,
                   timeout=60)
    site = next((clone / ".venv" / "lib").glob("python3.*")) / "site-packages"
    ours = sysconfig.get_paths()["purelib"]
    (site / "kefu-tour.pth").write_text(f"{clone / 'server'}\n{ours}\n")
    kefu = clone / ".venv" / "bin" / "kefu"
    kefu.write_text(f"#!{clone / '.venv' / 'bin' / 'python'}\nimport sys\nfrom kefu.cli import main\n"
                    "sys.exit(main())\n")
    kefu.chmod(0o755)
    (clone / ".venv" / ".kefu-installed").touch()


def test_the_readme_tour_works_pasted_into_a_fresh_clone(tmp_path):
    script = tour_script()
    assert not re.search(r"(^|[|;&]\s*)(nc|ncat|netcat|telnet)\b", script, re.M), "the tour needs no nc"
    assert "localhost:8000" in script and "127.0.0.1:8000" in script and "localhost:9464" in script
    if shutil.which("git") is None:
        pytest.fail("git is needed to clone the checkout")
    clone = tmp_path / "kefu"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    if os.environ.get("KEFU_TOUR_INSTALL") != "1":
        reuse_this_venv(clone)

    env = clean_env()
    port, mport = env["KEFU_PORT"], env["KEFU_METRICS_PORT"]
    for old, new in (("localhost:8000", f"localhost:{port}"), ("127.0.0.1:8000", f"127.0.0.1:{port}"),
                     ("localhost:9464", f"localhost:{mport}")):
        script = script.replace(old, new)
    (tmp_path / "tour.sh").write_text("set -euo pipefail\n" + script)
    try:
        r = subprocess.run(["bash", str(tmp_path / "tour.sh")], cwd=clone, env=env, capture_output=True,
                           text=True, timeout=240 if os.environ.get("KEFU_TOUR_INSTALL") == "1" else 90)
    finally:
        if (clone / "var" / "kefu.pid").exists():  # the tour's last line failed to run
            subprocess.run([str(clone / ".venv" / "bin" / "kefu"), "stop"], cwd=clone, env=env, timeout=60)
    out = r.stdout
    (tmp_path / "tour.out").write_text(f"{out}\n--- stderr\n{r.stderr}")  # for whoever reads a failure
    assert r.returncode == 0, f"the tour failed:\n{out}\n{r.stderr}"
    assert "kefu: ready on" in r.stderr and "created agent alice" in out
    assert '"cmd":"ack","cmid":"c1"' in out  # the user's message was acknowledged …
    assert '"msg":"你好"' in out and '"from":"user"' in out  # … and reached the agent's socket
    assert "KEFU_API_KEY" in out and "tour-secret" not in out  # check masks the key from .env
    assert '"conversations":[{"openid":"sbx_' in out
    plain = re.sub(r"\x1b(\[[0-9;]*[A-Za-z]|[78])", "", out)  # the websockets client's cursor moves
    # `ok` on a line of its own, or after the prompt of the websockets client printing beside it
    assert re.search(r"(?m)^(> )*ok$", plain) and '{"delivered":true,"nodes":1}' in out
    assert '"msg":"your order shipped"' in out and '"msg":"and delivered"' in out
    assert '"ready":true' in out and "kefu_messages_accepted_total" in out
    assert "kefu: stopped" in r.stderr
    assert (clone / "var" / "kefu.sqlite3").exists()  # the checkout's var/, as the README says
