"""Asking every node that holds a channel to act, and knowing when all of them have.

`PUBLISH` tells the publisher how many nodes received an envelope, not when they have acted on it.
A request that must be in effect everywhere before it is answered — a group join, when the next
push line may go to that group — carries this node's answer channel (`node:<id>`) and a fresh ask
id. Every node that received it acts, then publishes an `answer` envelope with the id to that
channel; the asker waits for as many answers as the publish counted receivers, for at most
`ANSWER_TIMEOUT` seconds (a node that died after receiving never answers). The in-process broker
takes the same path, so one mechanism serves one process and many.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from typing import Any

from kefu.broker.base import Broker
from kefu.core.routing import Envelope

ANSWER_TIMEOUT = 2.0
NODE_PREFIX = "node:"


class Tally:
    """The answers to one ask, done once `expected` (known when the publish returns) have come:
    answers may arrive before the publish's own reply does. Pure."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.answered = 0
        self.expected: int | None = None

    def expect(self, n: int) -> None:
        self.expected = n
        self._check()

    def add(self) -> None:
        self.answered += 1
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.answered >= self.expected and not self.done.done():
            self.done.set_result(None)


class Asks:
    def __init__(self, broker: Broker, node_id: str) -> None:
        self.broker = broker
        self.channel = NODE_PREFIX + node_id
        self._open: dict[str, Tally] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        await self.broker.subscribe(self.channel)
        await self.broker.settled()

    async def ask(self, channel: str, env: Envelope, timeout: float = ANSWER_TIMEOUT) -> tuple[int, int]:
        """Publish `env` on `channel`; (nodes that received it, nodes that answered in time)."""
        ask_id = str(next(self._ids))
        tally = self._open[ask_id] = Tally(asyncio.get_running_loop().create_future())
        try:
            frame = {**env.frame, "reply": self.channel, "ask": ask_id}
            (nodes,) = await self.broker.publish((channel,), dataclasses.replace(env, frame=frame))
            tally.expect(nodes)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await tally.done
            return nodes, tally.answered
        finally:
            del self._open[ask_id]

    def answered(self, frame: dict[str, Any]) -> None:
        """An `answer` envelope arrived on this node's channel."""
        ask_id = frame.get("ask")
        tally = self._open.get(ask_id) if isinstance(ask_id, str) else None
        if tally is not None:
            tally.add()

    async def answer(self, frame: dict[str, Any]) -> None:
        """Tell the asker this node has acted on the request `frame` (nothing if nobody asked)."""
        reply, ask_id = frame.get("reply"), frame.get("ask")
        if isinstance(reply, str) and reply.startswith(NODE_PREFIX) and isinstance(ask_id, str):
            await self.broker.publish((reply,), Envelope("answer", "backend", frame={"ask": ask_id}))
