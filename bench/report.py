"""The one table: every number for every target, its range over the runs, and its ratio to the peer."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from bench.result import RunResult
from bench.targets import LABELS, TARGETS


@dataclass(frozen=True)
class Row:
    scenario: str
    key: str  # a metric, or "server_cpu" / "generator_cpu", or a relay check
    label: str
    digits: int = 0
    check: bool = False  # from RunResult.checks: shown as is, no ratio
    ratio: bool = True


ROWS = [
    Row("push", "delivered_per_s", "push: delivered/s"),
    Row("push", "delivery_p50_ms", "push: delivery p50, ms", 1),
    Row("push", "delivery_p99_ms", "push: delivery p99, ms", 1),
    Row("push", "reply_p50_ms", "push: `ok` reply p50, ms", 1),
    Row("push", "reply_p99_ms", "push: `ok` reply p99, ms", 1),
    Row("push", "fail_replies", "push: `fail` replies (every page is bound)", ratio=False),
    Row("push", "server_cpu", "push: server CPU, % of a core", ratio=False),
    Row("push", "generator_cpu", "push: generator CPU, % of a core", ratio=False),
    Row("push", "others_cpu", "push: other processes' CPU, % of a core", ratio=False),
    Row("relay", "delivered_per_s", "relay: messages/s (acked, to every agent)"),
    Row("relay", "relay_p50_ms", "relay: send → agent p50, ms", 1),
    Row("relay", "relay_p99_ms", "relay: send → agent p99, ms", 1),
    Row("relay", "ack_p50_ms", "relay: send → ack p50, ms", 1),
    Row("relay", "ack_p99_ms", "relay: send → ack p99, ms", 1),
    Row("relay", "server_cpu", "relay: server CPU, % of a core", ratio=False),
    Row("relay", "generator_cpu", "relay: generator CPU, % of a core", ratio=False),
    Row("relay", "others_cpu", "relay: other processes' CPU, % of a core", ratio=False),
    Row("relay", "lost", "relay: lost", check=True),
    Row("relay", "duplicated", "relay: duplicated", check=True),
    Row("relay", "stored_once", "relay: every acked row stored once", check=True),
    Row("idle", "rss_kib_per_socket", "idle: RSS per socket, KiB", 1),
    Row("idle", "connects_per_s", "connects/s, chat (`/ws` + hello)"),
    Row("push", "page_connects_per_s", "connects/s, QR page (`/ws/qr` + bind echo)"),
    Row("idle", "server_cpu", "connects: server CPU, % of a core", ratio=False),
    Row("idle", "generator_cpu", "connects: generator CPU, % of a core", ratio=False),
    Row("idle", "others_cpu", "connects: other processes' CPU, % of a core", ratio=False),
]


def value(r: RunResult, key: str) -> float:
    if key == "server_cpu":
        return 100 * r.usage.server_cpu
    if key == "generator_cpu":
        return 100 * r.usage.generator_cpu
    if key == "others_cpu":
        return 100 * r.usage.others_cpu
    return r.metrics[key]


def span(values: list[float], digits: int) -> str:
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def cell(row: Row, runs: list[RunResult]) -> tuple[str, float | None]:
    """The shown value over the runs, and their mean (None for checks or no runs)."""
    if not runs:
        return "", None
    if row.check:
        shown = [str(r.checks.get(row.key, "—")) for r in runs]
        return " / ".join(dict.fromkeys(shown)), None
    values = [value(r, row.key) for r in runs]
    return span(values, row.digits), statistics.mean(values)


def ratio(kefu: float | None, peer: float | None) -> str:
    if kefu is None or not peer:
        return ""
    return f"{kefu / peer:.2f}×"


def table(results: Iterable[RunResult], targets: list[str]) -> str:
    results = list(results)
    kefus = [t for t in TARGETS if t in targets and t != "peer"]
    head = ["", *(["peer"] if "peer" in targets else [])]
    for t in kefus:
        head += [LABELS[t], "× peer"] if "peer" in targets else [LABELS[t]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    scenarios = {r.scenario for r in results}
    for row in ROWS:
        if row.scenario not in scenarios:
            continue
        runs = {t: [r for r in results if r.scenario == row.scenario and r.target == t] for t in targets}
        shown_peer, peer_mean = cell(row, runs.get("peer", []))
        cells = [row.label, *([shown_peer] if "peer" in targets else [])]
        for t in kefus:
            shown, mean = cell(row, runs[t])
            cells += [shown, ratio(mean, peer_mean) if row.ratio else ""] if "peer" in targets else [shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peers_note(results: Iterable[RunResult]) -> str:
    """Which peer each scenario's "peer" column is, e.g. `… (uvloop) for push`."""
    scenarios: dict[str, list[str]] = {}
    for r in results:
        if r.target == "peer" and r.scenario not in scenarios.setdefault(r.label, []):
            scenarios[r.label].append(r.scenario)
    return "; ".join(f"{label} for {', '.join(s)}" for label, s in scenarios.items())
