"""The interface the hub, the node and the journal publish and subscribe through."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from kefu.core.routing import Envelope

OnEnvelope = Callable[[str, Envelope], None]
OnGap = Callable[[], None]


class Broker(Protocol):
    """Pub/sub between nodes. A node subscribes to a channel while it holds a socket for it."""

    @property
    def connected(self) -> bool:
        """Whether fan-out reaches this node right now (readiness)."""
        ...

    async def start(self, on_envelope: OnEnvelope, on_gap: OnGap) -> None:
        """`on_gap` runs when the subscription was lost and is back: envelopes may have been missed."""
        ...

    async def stop(self) -> None: ...
    async def subscribe(self, channel: str) -> None: ...
    async def unsubscribe(self, channel: str) -> None: ...

    async def settled(self) -> None:
        """Every subscribe and unsubscribe this node made before the call is in effect: a publish
        from any node after it reaches this node on those channels (or no longer does).
        `Unavailable` when the broker cannot confirm it."""
        ...

    async def publish(self, channels: tuple[str, ...], env: Envelope) -> list[int]:
        """Deliver to every node subscribed to each channel (in one round trip); per-channel counts."""
        ...

    def publish_soon(self, channels: tuple[str, ...], env: Envelope) -> asyncio.Future[list[int]]:
        """`publish` without a coroutine (and the task a caller would need to run many at once):
        the future of its counts, already done when the broker is in-process."""
        ...

    async def online(self, channel: str) -> bool:
        """Whether any node is subscribed (holds a socket for) `channel`."""
        ...
