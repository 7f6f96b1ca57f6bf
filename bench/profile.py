"""Where kefu's time goes: py-spy attached to the server for one load phase, and a summary of it.

py-spy (from PyPI: `.venv/bin/pip install py-spy`) samples the server's Python stacks from outside
the process; its collapsed-stack output ("frame;frame;… count" per line) is summarised here by own
time (the innermost frame of each sample), per function and per package.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


class Recording:
    """`py-spy record` on `pid` from `start()` until `stop()`, into `out` (collapsed stacks)."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [py_spy(), "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.out),
             "--rate", str(self.rate), "--nonblocking", "--duration", "600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attached and sampling before the load starts
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"py-spy could not attach to {self.pid}: {err.strip()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def area(file: str) -> str:
    """The package a source file belongs to: `kefu/<module>`, a site-package, or the stdlib."""
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
        if not file.startswith("kefu/"):
            return file.split("/", 1)[0].removesuffix(".py")
    if file.startswith("kefu/") or "/kefu/" in file:
        return "kefu/" + file.split("kefu/", 1)[1].removesuffix(".py")
    if file.startswith("<"):
        return file
    return "stdlib " + Path(file).stem


def summarise(raw: Path, top: int = 12) -> str:
    """Own time per package and per function, as two short Markdown tables."""
    by_area: Counter[str] = Counter()
    by_func: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.rsplit(";", 1)[-1]
        m = FRAME.match(leaf)
        func, file = (m["func"], m["file"]) if m else (leaf, "?")
        by_area[area(file)] += n
        by_func[f"{func} ({area(file)})"] += n
    if not total:
        return f"{raw.name}: no samples\n"
    out = [f"{raw.name}: {total} samples", "", "| own time | package |", "|---:|---|"]
    out += [f"| {100 * n / total:.1f} % | {a} |" for a, n in by_area.most_common(top)]
    out += ["", "| own time | function |", "|---:|---|"]
    out += [f"| {100 * n / total:.1f} % | `{f}` |" for f, n in by_func.most_common(top)]
    return "\n".join(out) + "\n"
