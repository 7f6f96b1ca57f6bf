"""The servers under test, each started fresh for one scenario run and stopped after it.

A target is kefu on the embedded default, kefu on Redis + MariaDB (its own database and key
prefix, removed after), or the peer: the plain `websockets` push server for the push scenario,
the no-durability relay floor for the others. The load generator sees one interface: where to
connect, how to get QR codes and tokens, and (kefu only) what reached the database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pymysql
from tests.support import services
from tests.support.server import free_port

from bench.common import ROOT, KefuDeployment, Meter, Recorder, bench_server

HOST = "127.0.0.1"
TARGETS = ["embedded", "redis_mysql", "peer"]
LABELS = {"embedded": "kefu embedded", "redis_mysql": "kefu Redis+MariaDB", "peer": "peer"}
PEERS = {"push": "plain websockets push server", "relay": "no-durability relay floor",
         "idle": "no-durability relay floor"}
AGENT_PASSWORD = "correct-horse-1"


@dataclass
class Page:
    uid: str
    ticket: str
    bind: bytes  # the QR page's bind frame: {"ticket", "expire_seconds", "uid"}


@dataclass
class StoredRow:
    id: int
    sender_key: str
    cmid: str | None
    body: str


class Target:
    key: str
    label: str
    pid: int
    port: int
    push_port: int | None = None
    chat_path = "/ws?token={token}&v=2"
    page_path = "/ws/qr"
    stores = False  # kefu stores messages; the peers store nothing
    recording: Recorder | None = None  # set for a profiling run

    def meter(self) -> Meter:
        """Measures the load phase (and profiles it, on a profiling run)."""
        return Meter(self.pid, self.recording)

    async def qr_pages(self, n: int) -> list[Page]:
        raise NotImplementedError

    async def user_tokens(self, n: int) -> list[str]:
        raise NotImplementedError

    async def agent_token(self) -> str:
        raise NotImplementedError

    def stored(self) -> list[StoredRow]:
        """Every row of `messages` (only where `stores`)."""
        raise NotImplementedError


class PeerTarget(Target):
    def __init__(self, proc: subprocess.Popen[bytes], port: int, push_port: int | None, loop: str,
                 label: str) -> None:
        self.key, self.proc, self.pid, self.port, self.push_port = "peer", proc, proc.pid, port, push_port
        self.loop, self.label = loop, label

    async def qr_pages(self, n: int) -> list[Page]:
        pages = []
        for _ in range(n):
            uid, ticket = os.urandom(10).hex(), base64.b64encode(os.urandom(60)).decode()
            bind = {"ticket": ticket, "expire_seconds": 300, "uid": uid}
            pages.append(Page(uid, ticket, json.dumps(bind).encode()))
        return pages

    async def user_tokens(self, n: int) -> list[str]:
        return [f"user:bench_{i}" for i in range(n)]

    async def agent_token(self) -> str:
        return "agent:bench"


class KefuTarget(Target):
    stores = True

    def __init__(self, key: str, deployment: KefuDeployment) -> None:
        self.key, self.label, self.deployment = key, LABELS[key], deployment
        srv = deployment.server
        assert srv.proc is not None
        self.pid, self.port = srv.proc.pid, srv.port
        push = srv.env.get("KEFU_PUSH_PORT")
        self.push_port = int(push) if push else None

    async def _many(self, n: int, one: Callable[[httpx.AsyncClient, int], Awaitable[Any]]) -> list[Any]:
        """`n` HTTP calls, 16 at a time (login and QR creation happen before the timed part)."""
        out: list[Any] = []
        async with httpx.AsyncClient(base_url=self.deployment.server.base_url, timeout=30) as http:
            for start in range(0, n, 16):
                out += await asyncio.gather(*(one(http, i) for i in range(start, min(n, start + 16))))
        return out

    async def qr_pages(self, n: int) -> list[Page]:
        async def one(http: httpx.AsyncClient, _: int) -> Page:
            r = await http.get("/qrcode")
            r.raise_for_status()
            qr = r.json()
            bind = {k: qr[k] for k in ("ticket", "expire_seconds", "uid")}
            return Page(qr["uid"], qr["ticket"], json.dumps(bind).encode())
        return await self._many(n, one)

    async def user_tokens(self, n: int) -> list[str]:
        async def one(http: httpx.AsyncClient, i: int) -> str:
            r = await http.post("/api/login", json={"code": f"bench-{i}"})
            r.raise_for_status()
            return str(r.json()["token"])
        return await self._many(n, one)

    async def agent_token(self) -> str:
        srv = self.deployment.server
        await asyncio.to_thread(srv.create_agent, "bench", AGENT_PASSWORD)
        return await asyncio.to_thread(srv.agent_token, "bench", AGENT_PASSWORD)

    def stored(self) -> list[StoredRow]:
        q = "SELECT id, sender_key, cmid, body FROM messages ORDER BY id"
        if self.deployment.database:
            with pymysql.connect(host=services.MYSQL_HOST, port=services.MYSQL_PORT, user="root",
                                 password="", database=self.deployment.database,
                                 charset="utf8mb4") as c, c.cursor() as cur:
                cur.execute(q)
                rows = list(cur.fetchall())
        else:
            c = sqlite3.connect(self.deployment.data_dir / "kefu.sqlite3")
            try:
                rows = c.execute(q).fetchall()
            finally:
                c.close()
        return [StoredRow(*r) for r in rows]


def _start_peer(module: str, args: list[str], timeout: float, max_seconds: float
                ) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", module, *args, "--max-seconds", str(max_seconds)],
                            cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode().split() if ready else []
    if line[:1] != ["ready"]:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"{module} did not start (said {line!r}, exit {proc.poll()})")
    return proc, line[1] if len(line) > 1 else "asyncio"


@asynccontextmanager
async def started(key: str, scenario: str, max_seconds: float = 900,
                  kefu_env: dict[str, str] | None = None) -> AsyncIterator[Target]:
    """A fresh target for one run of `scenario`; stopped (and its data removed) on exit.
    `kefu_env` is extra settings for kefu (`KEFU_…`), to measure a configuration."""
    async with AsyncExitStack() as stack:
        if key == "peer":
            port = free_port()
            if scenario == "push":
                push_port = free_port()
                proc, loop = await asyncio.to_thread(
                    _start_peer, "bench.peers.push_server",
                    ["--port", str(port), "--push-port", str(push_port)], 15, max_seconds)
            else:
                push_port = None
                proc, loop = await asyncio.to_thread(
                    _start_peer, "bench.peers.relay_floor", ["--port", str(port)], 15, max_seconds)
            stack.callback(_stop, proc)
            yield PeerTarget(proc, port, push_port, loop, f"{PEERS[scenario]} ({loop})")
        else:
            env = {"KEFU_PUSH_PORT": str(free_port())} if scenario == "push" else {"KEFU_PUSH_PORT": "0"}
            cm = bench_server(key, **env, **(kefu_env or {}))
            deployment = await asyncio.to_thread(cm.__enter__)
            stack.push(lambda *exc: cm.__exit__(*exc))
            yield KefuTarget(key, deployment)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
