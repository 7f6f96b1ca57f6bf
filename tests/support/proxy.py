"""A TCP proxy the test can cut and restore, to make MariaDB unreachable for kefu only; with `lag`,
every byte arrives that many seconds late, each way (a distant Redis, for one node only)."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int, lag: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.lag = lag
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones: to kefu, the database is gone."""
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._links):
            w.transport.abort()
        self._links.clear()

    async def restore(self) -> None:
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                if self.lag:
                    await _lagging(src, dst, self.lag)
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._links -= {writer, up_w}


async def _lagging(src: asyncio.StreamReader, dst: asyncio.StreamWriter, lag: float) -> None:
    """Forward each chunk `lag` seconds after it was read, in order, without adding up the lags."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await chunks.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                return
            dst.write(data)
            await dst.drain()

    forwarder = asyncio.create_task(forward())
    try:
        while True:
            data = await src.read(65536)
            chunks.put_nowait((loop.time() + lag, data))
            if not data:
                break
        await forwarder
    finally:
        forwarder.cancel()
