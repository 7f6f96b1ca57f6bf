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
    phases: dict[str, Usage] = field(default_factory=dict)  # other measured phases (page connects)

    def generator_peak(self) -> tuple[str, Usage]:
        """The measured phase in which the generator was busiest."""
        return max([("load", self.usage), *self.phases.items()], key=lambda p: p[1].generator_cpu)
