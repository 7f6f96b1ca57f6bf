"""In-process engine for the embedded default: one process, no Redis."""

from __future__ import annotations

from collections import OrderedDict

from kefu.broker.base import OnMessage


class LocalBroker:
    def __init__(self) -> None:
        self._channels: set[str] = set()
        self._on_message: OnMessage | None = None

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message

    async def stop(self) -> None:
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def online(self, channel: str) -> bool:
        return channel in self._channels

    async def publish(self, channels: tuple[str, ...], data: str) -> list[int]:
        counts = []
        for channel in channels:
            here = channel in self._channels and self._on_message is not None
            if here:
                self._on_message(channel, data)  # type: ignore[misc]
            counts.append(int(here))
        return counts


class LocalSequencer:
    """Counter plus a TTL'd map of recent cmids, bounded so memory cannot grow without limit."""

    def __init__(self, dedupe_ttl: int, max_entries: int = 200_000) -> None:
        self._next = 0
        self._ttl_ms = dedupe_ttl * 1000
        self._max = max_entries
        self._seen: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()

    async def claim(self, sender: str, cmid: str | None, now_ms: int) -> tuple[int, int, bool]:
        if cmid is not None:
            while self._seen:
                _, (_, ts) = next(iter(self._seen.items()))
                if ts > now_ms - self._ttl_ms and len(self._seen) < self._max:
                    break
                self._seen.popitem(last=False)
            hit = self._seen.get((sender, cmid))
            if hit is not None:
                return hit[0], hit[1], True
        self._next += 1
        if cmid is not None:
            self._seen[(sender, cmid)] = (self._next, now_ms)
        return self._next, now_ms, False

    async def forget(self, sender: str, cmid: str) -> None:
        self._seen.pop((sender, cmid), None)

    async def raise_floor(self, floor: int) -> None:
        self._next = max(self._next, floor)
