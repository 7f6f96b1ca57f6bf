"""One run of one scenario against one target: its numbers and the CPU it took."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.common import Usage


@dataclass
class RunResult:
    scenario: str
    target: str  # "embedded" | "redis_mysql" | "peer"
    label: str
    repeat: int
    usage: Usage
    metrics: dict[str, float]
    checks: dict[str, int | str] = field(default_factory=dict)  # relay: lost, duplicated, stored
