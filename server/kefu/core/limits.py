"""Per-socket budgets. Pure: the caller passes the clock, so tests need no sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """Allows `rate` events per second on average with bursts up to `burst`."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class Strikes:
    """Counts errors, forgiving one per second; `hit` says when the budget is spent."""

    limit: int
    count: float = 0.0
    stamp: float | None = None

    def hit(self, now: float) -> bool:
        if self.stamp is not None:
            self.count = max(0.0, self.count - (now - self.stamp))
        self.stamp = now
        self.count += 1
        return self.count > self.limit
