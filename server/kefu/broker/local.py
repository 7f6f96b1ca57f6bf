"""In-process broker for the embedded default: one process, no Redis; envelopes stay objects."""

from __future__ import annotations

import asyncio

from kefu.broker.base import OnEnvelope, OnGap
from kefu.core.routing import Envelope


class LocalBroker:
    def __init__(self) -> None:
        self._channels: set[str] = set()
        self._on_envelope: OnEnvelope | None = None

    @property
    def connected(self) -> bool:
        return True

    async def start(self, on_envelope: OnEnvelope, on_gap: OnGap) -> None:
        self._on_envelope = on_envelope

    async def stop(self) -> None:
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def settled(self) -> None:
        pass  # in-process: a subscription is in effect when `subscribe` returns

    async def online(self, channel: str) -> bool:
        return channel in self._channels

    def here(self, channel: str) -> bool:
        """`online` without the await, for the embedded journal's writer."""
        return channel in self._channels

    async def publish(self, channels: tuple[str, ...], env: Envelope) -> list[int]:
        return self.publish_now(channels, env)

    def publish_soon(self, channels: tuple[str, ...], env: Envelope) -> asyncio.Future[list[int]]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(self.publish_now(channels, env))
        return done

    def publish_now(self, channels: tuple[str, ...], env: Envelope) -> list[int]:
        counts = []
        for channel in channels:
            here = channel in self._channels and self._on_envelope is not None
            if here:
                self._on_envelope(channel, env)  # type: ignore[misc]
            counts.append(int(here))
        return counts
