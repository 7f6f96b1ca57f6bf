"""Work started in the background: held, logged once when it fails, drained on stop.

asyncio keeps only weak references to tasks, so a task nobody holds can vanish mid-way; and an
exception in a task nobody awaits is printed at garbage collection, if ever. A `Background` holds
each task until it ends, logs a failure with what the work was (infrastructure trouble as a
warning: whatever retries it will try again), and lets work under way finish on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from kefu.errors import is_infrastructure


class Background:
    def __init__(self, log: logging.Logger, name: str) -> None:
        self.log, self.name = log, name
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Awaitable[object], what: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as e:  # a background task's last resort
                if is_infrastructure(e):
                    self.log.warning("%s: %s failed: %s", self.name, what, e)
                else:
                    self.log.exception("%s: %s failed", self.name, what)
        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float = 5.0) -> None:
        """Let work under way finish for up to `grace` seconds (a drain), then cut what is left."""
        if self._tasks and grace > 0:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
