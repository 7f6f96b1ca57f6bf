"""The interfaces the hub and the relay depend on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

OnMessage = Callable[[str, str], None]


class Broker(Protocol):
    """Pub/sub between nodes. A node subscribes to a channel while it holds a socket for it."""

    async def start(self, on_message: OnMessage) -> None: ...
    async def stop(self) -> None: ...
    async def subscribe(self, channel: str) -> None: ...
    async def unsubscribe(self, channel: str) -> None: ...
    async def publish(self, channels: tuple[str, ...], data: str) -> list[int]:
        """Deliver to every node subscribed to each channel (in one round trip); per-channel counts."""
        ...

    async def online(self, channel: str) -> bool:
        """Whether any node is subscribed (holds a socket for) `channel`."""
        ...


class Sequencer(Protocol):
    """Deployment-wide increasing message ids, and client-message-id dedupe."""

    async def claim(self, sender: str, cmid: str | None, now_ms: int) -> tuple[int, int, bool]:
        """Return (id, ts, dup): a fresh id, or the earlier (id, ts) for a cmid seen before."""
        ...

    async def forget(self, sender: str, cmid: str) -> None:
        """Drop a cmid whose message could not be stored, so its resend is accepted afresh."""
        ...

    async def raise_floor(self, floor: int) -> None:
        """Make sure future ids exceed `floor` (the largest id already stored)."""
        ...
