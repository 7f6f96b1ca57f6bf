"""Where kefu's time goes: py-spy attached to the server for one load phase, and a summary of it.

py-spy (from PyPI: `.venv/bin/pip install py-spy`) samples the server's Python stacks from outside
the process, without pausing it; its collapsed-stack output ("thread;frame;…;frame count" per
line) is summarised here by thread and by own time (the innermost frame of each sample), per
function and per package. py-spy counts a thread whenever it is runnable, so on a loaded machine a
thread that has just been woken and waits for a core (or the GIL) shows up at the call it is
returning from, e.g. aiosqlite's worker at `tx.get()`.
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

ENTRY = {"kefu/__main__", "kefu/cli", "kefu/serving"}  # the process's entry frames: on every stack
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
             "--rate", str(self.rate), "--nonblocking", "--threads", "--duration", "600"],
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
    """The package of a source file as py-spy names it (`sanic/app.py`, `asyncio/tasks.py`,
    `kefu/hub.py`): `kefu/<module>`, a third-party package, or `stdlib <module>`."""
    if "site-packages/" in file:
        file = file.rsplit("site-packages/", 1)[1]
    if file.startswith("<"):
        return file
    if file.startswith("kefu/") or "/kefu/" in file:
        return "kefu/" + file.rsplit("kefu/", 1)[1].removesuffix(".py")
    if "/" not in file and not file.endswith(".py"):
        return "generated code"
    file = re.sub(r"^/.*/lib/python3\.\d+/", "", file)  # an absolute stdlib path
    top = Path(file).stem if file.startswith("/") else Path(file).parts[0].removesuffix(".py")
    return f"stdlib {top}" if top in sys.stdlib_module_names else top


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %"


def summarise(raw: Path, top: int = 12) -> str:
    """Samples per thread; on the busiest thread (the event loop) own time per package and per
    function, and kefu's functions with everything they call; the top functions of the other
    threads. Markdown."""
    threads: Counter[str] = Counter()
    by_area: dict[str, Counter[str]] = {}
    by_func: dict[str, Counter[str]] = {}
    kefu_inclusive: dict[str, Counter[str]] = {}  # kefu functions on the stack, with what they call
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames.pop(0).split(": ", 1)[-1]
            thread = re.sub(r"^Thread-\d+ ", "", thread)  # "Thread-3 (_connection_worker_thread)"
        m = FRAME.match(frames[-1]) if frames else None
        func, file = (m["func"], m["file"]) if m else (frames[-1] if frames else "?", "?")
        threads[thread] += n
        on_stack = {f"{fm['func']} ({area(fm['file'])})" for fm in map(FRAME.match, frames)
                    if fm and area(fm["file"]).startswith("kefu/") and area(fm["file"]) not in ENTRY}
        for f in on_stack:
            kefu_inclusive.setdefault(thread, Counter())[f] += n
        by_area.setdefault(thread, Counter())[area(file)] += n
        by_func.setdefault(thread, Counter())[f"{func} ({area(file)})"] += n
    total = sum(threads.values())
    if not total:
        return f"{raw.name}: no samples\n"
    busiest = threads.most_common(1)[0][0]
    out = [f"{raw.name}: {total} samples", "", "| samples | thread |", "|---:|---|"]
    out += [f"| {_share(n, total)} | {t} |" for t, n in threads.most_common()]
    own = threads[busiest]
    out += ["", f"Own time on {busiest}:", "", "| own time | package |", "|---:|---|"]
    out += [f"| {_share(n, own)} | {a} |" for a, n in by_area[busiest].most_common(top)]
    out += ["", "| own time | function |", "|---:|---|"]
    out += [f"| {_share(n, own)} | `{f}` |" for f, n in by_func[busiest].most_common(top)]
    out += ["", "| with callees | kefu function |", "|---:|---|"]
    inclusive = kefu_inclusive.get(busiest, Counter()).most_common(top)
    out += [f"| {_share(n, own)} | `{f}` |" for f, n in inclusive]
    for t, n in threads.most_common():
        if t != busiest:
            out += ["", f"Own time on {t} ({_share(n, total)} of all samples):", "",
                    "| own time | function |", "|---:|---|"]
            out += [f"| {_share(k, n)} | `{f}` |" for f, k in by_func[t].most_common(5)]
    return "\n".join(out) + "\n"
