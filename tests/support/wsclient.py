"""A small real WebSocket client for tests, built on `websockets`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, url: str, token: str | None = None, v2: bool = True, hello: bool = True,
                      **kw: Any) -> WsClient:
        q = []
        if token is not None:
            q.append(f"token={token}")
        if v2:
            q.append("v=2")
        kw.setdefault("max_size", 2**22)
        conn = await websockets.connect(url + ("?" + "&".join(q) if q else ""), open_timeout=10, **kw)
        client = cls(conn)
        if v2 and hello and token is not None:
            hello = await client.recv(timeout=5)
            assert hello["cmd"] == "hello", hello
            client.hello = hello
        return client

    async def send(self, obj: dict[str, Any] | str) -> None:
        await self.conn.send(obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))

    async def recv_until(self, pred: Callable[[dict[str, Any]], bool],
                         timeout: float = 5.0) -> dict[str, Any]:
        """Skip frames until one matches; fails after `timeout` seconds in all."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if pred(frame):
                    return frame

    async def nothing_for(self, seconds: float) -> list[dict[str, Any]]:
        """Frames that arrive within `seconds` (the test asserts there are none, or which)."""
        got = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    got.append(json.loads(await self.conn.recv()))
        except TimeoutError:
            pass
        return got

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close; returns (code, reason)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.conn.recv()
        except websockets.ConnectionClosed:
            pass
        return self.conn.close_code, self.conn.close_reason or ""

    async def close(self) -> None:
        await self.conn.close()
