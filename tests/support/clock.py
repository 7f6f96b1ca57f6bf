"""A clock tests move by hand: the pure parts take `clock=` so that time is not waited for."""

from __future__ import annotations


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
