"""What both peers share: uvloop when installed, loopback only, SIGTERM or a time limit to stop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

HOST = "127.0.0.1"


def arguments(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True, help="WebSocket port on 127.0.0.1")
    p.add_argument("--max-seconds", type=float, default=3600.0,
                   help="stop by itself after this long, even if nobody sends SIGTERM")
    return p


def ready() -> None:
    """Tell the benchmark (reading stdout) that the ports are open, and on which event loop."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"ready {loop}", flush=True)


async def shut(server: Any, timeout: float = 3.0) -> None:
    """Close a listening server and its connections, waiting at most `timeout` for them."""
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), timeout)


def run(main: Callable[[asyncio.Future[None]], Awaitable[None]], max_seconds: float) -> None:
    """Run `main(stop)` on uvloop (when installed) until SIGTERM/SIGINT or `max_seconds`;
    `main` calls `ready()` once it listens."""

    async def supervise() -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()

        def end() -> None:
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, end)
        loop.call_later(max_seconds, end)
        await main(stop)

    try:
        import uvloop
    except ImportError:
        asyncio.run(supervise())
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(supervise())
