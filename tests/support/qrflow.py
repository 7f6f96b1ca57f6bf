"""Helpers for the QR login and push tests: real-mode env against the fake WeChat, a QR page's
socket, and a push-port client that talks like a PHP backend (one socket, JSON + "\\n", read reply)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from tests.fake_wechat import MP_APPID, MP_SECRET, OA_APPID, OA_SECRET, FakeWeChat
from tests.support.server import KefuServer, free_port
from tests.support.wsclient import WsClient

OA_TOKEN = "oa-callback-token-for-tests"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
API_KEY = "push-api-key-for-tests"
SANDBOX_CALLBACK_TOKEN = "kefu-sandbox-callback-token"  # documented in docs/configuration.md


def real_env(fw: FakeWeChat, **extra: str) -> dict[str, str]:
    """KEFU_* for real mode with both WeChat apps pointed at the fake, and a private push port."""
    return {"KEFU_WECHAT_MODE": "real", "KEFU_MP_APPID": MP_APPID, "KEFU_MP_SECRET": MP_SECRET,
            "KEFU_OA_APPID": OA_APPID, "KEFU_OA_SECRET": OA_SECRET, "KEFU_OA_TOKEN": OA_TOKEN,
            "KEFU_WECHAT_API_BASE": fw.api_base, "KEFU_WECHAT_MP_BASE": fw.mp_base,
            "KEFU_PUSH_PORT": str(free_port()), "KEFU_API_KEY": API_KEY, **extra}


def sandbox_env(**extra: str) -> dict[str, str]:
    return {"KEFU_PUSH_PORT": str(free_port()), "KEFU_API_KEY": API_KEY, **extra}


def push_port(srv: KefuServer) -> int:
    return int(srv.env["KEFU_PUSH_PORT"])


def callback_url(srv: KefuServer) -> str:
    return srv.base_url + "/wechat/callback"


def new_qr(srv: KefuServer) -> dict[str, Any]:
    r = httpx.get(srv.base_url + "/qrcode")
    assert r.status_code == 200, r.text
    return r.json()


def bind_frame(qr: dict[str, Any]) -> dict[str, Any]:
    return {"ticket": qr["ticket"], "expire_seconds": qr["expire_seconds"], "uid": qr["uid"]}


async def open_page(srv: KefuServer, qr: dict[str, Any] | None = None, v2: bool = False) -> WsClient:
    """A QR page's socket; with `qr`, bound to it (the echo checked)."""
    page = await WsClient.connect(srv.ws_url + "/qr", v2=v2, ping_interval=None)
    if qr is not None:
        await page.send(bind_frame(qr))
        assert await page.recv() == bind_frame(qr)
    return page


def api_push(srv: KefuServer, body: Any, key: str | None = API_KEY) -> httpx.Response:
    headers = {"X-Api-Key": key} if key is not None else {}
    return httpx.post(srv.base_url + "/api/push", json=body, headers=headers)


class PushClient:
    """What `stream_socket_client` + `fwrite(json_encode($data)."\\n")` + `fread` does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> PushClient:
        return cls(*await asyncio.open_connection(host, port))

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, obj: Any) -> str:
        await self.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
        return await self.reply()

    async def reply(self, timeout: float = 5.0) -> str:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        return line.decode()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the server closed the connection (EOF)."""
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data == b"" or self.reader.at_eof()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
