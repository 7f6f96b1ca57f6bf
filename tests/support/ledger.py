"""Clients that keep a ledger, for fault injection: what they sent, what was acked, what they saw.

A `Ledger` client behaves as protocol.md tells a v2 client to: it resends unacked messages with the
same cmid after `unavailable` and after every reconnect, reconnects to the next node when its node
goes (logging in again after 4401), and syncs after the highest id it has seen — on reconnect, on
`resync` and at the end — paging while `more`. `check` then compares every ledger with the rows the
database holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

Login = Callable[[str], Awaitable[str]]  # base URL → token


@dataclass
class Ledger:
    name: str
    bases: list[str]  # http://127.0.0.1:port of every node, tried in turn
    login: Login
    role: str = "user"  # "user" sends type 2; "agent" only watches
    sent: dict[str, str] = field(default_factory=dict)  # cmid → body
    acked: dict[str, int] = field(default_factory=dict)  # cmid → id
    ack_ids: list[int] = field(default_factory=list)  # ids of non-dup acks, in the order received
    dup_acks: list[tuple[str, int, bool]] = field(default_factory=list)
    seen: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → message, live or synced
    closes: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    resyncs: int = 0
    epoch: str | None = None
    frames: dict[str, int] = field(default_factory=dict)  # frames received, by cmd (diagnostics)

    def __post_init__(self) -> None:
        self._ws: Any = None
        self._node = 0
        self._token: str | None = None
        self._unacked_wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._stop = False
        self._retry_after: dict[str, float] = {}

    # ---- connection ------------------------------------------------------------------------

    async def _connect(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            base = self.bases[self._node % len(self.bases)]
            try:
                if self._token is None:
                    self._token = await self.login(base)
                url = base.replace("http://", "ws://") + f"/ws?token={self._token}&v=2"
                ws = await websockets.connect(url, open_timeout=3, max_size=2**23)
                first = json.loads(await asyncio.wait_for(ws.recv(), 3))
                if first.get("cmd") != "hello":
                    raise ConnectionError(first)
                self._on_epoch(first["epoch"])
                self._ws = ws
                return
            except websockets.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                self.closes.append(code or 0)
                if code == 4401:
                    self._token = None
            except (OSError, TimeoutError, httpx.HTTPError, ConnectionError, websockets.InvalidHandshake,
                    websockets.InvalidURI, ValueError):
                pass
            self._node += 1
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name}: no node accepted a connection")

    def _on_epoch(self, epoch: str) -> None:
        if self.epoch is not None and epoch != self.epoch:
            raise AssertionError(f"{self.name}: the epoch changed from {self.epoch} to {epoch}")
        self.epoch = epoch

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.send(json.dumps(frame, ensure_ascii=False))

    def _after(self) -> int:
        return max(self.seen, default=0)

    async def _sync(self, after: int | None = None) -> None:
        self._synced.clear()
        await self._send({"cmd": "sync", "after": self._after() if after is None else after, "limit": 500})

    async def _resend_unacked(self) -> None:
        for cmid, body in self.sent.items():
            if cmid not in self.acked:
                await self._send({"type": 2, "msg": body, "cmid": cmid})

    # ---- frames ----------------------------------------------------------------------------

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._read_frames()

    async def _read_frames(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            f = json.loads(raw)
            cmd = f.get("cmd")
            self.frames[str(cmd)] = self.frames.get(str(cmd), 0) + 1
            if cmd == "ack":
                if f.get("dup"):
                    self.dup_acks.append((f["cmid"], f["id"], f["delivered"]))
                elif f["cmid"] not in self.acked:
                    self.ack_ids.append(f["id"])
                if f["cmid"] in self.acked and self.acked[f["cmid"]] != f["id"]:
                    raise AssertionError(f"{self.name}: {f['cmid']} acked as {self.acked[f['cmid']]} "
                                         f"and as {f['id']}")
                self.acked[f["cmid"]] = f["id"]
                self._unacked_wake.set()
            elif cmd == "error":
                self.errors.append(f)
                if f.get("retry") and f.get("cmid"):
                    self._retry_after[f["cmid"]] = time.monotonic() + 0.2
            elif cmd == "sync":
                self._on_epoch(f["epoch"])
                for m in f["messages"]:
                    self._see(m)
                if f["more"]:
                    await self._sync()
                else:
                    self._synced.set()
            elif cmd == "resync":
                self.resyncs += 1
                await self._sync(min(self._after(), f.get("after", self._after())))
            elif cmd is None and "id" in f:
                self._see(f)

    def _see(self, m: dict[str, Any]) -> None:
        prev = self.seen.get(m["id"])
        if prev is not None and (prev["msg"], prev.get("cmid"), prev["openid"]) != \
                (m["msg"], m.get("cmid"), m["openid"]):
            raise AssertionError(f"{self.name}: id {m['id']} named {prev} and {m}")
        self.seen[m["id"]] = m

    # ---- the run ---------------------------------------------------------------------------

    async def run(self, n: int = 0, gap: float = 0.0, timeout: float = 60.0) -> None:
        """Send `n` messages (users), until each is acked, surviving node and store failures."""
        deadline = time.monotonic() + timeout
        for i in range(n):
            self.sent[f"{self.name}-{i}"] = f"{self.name} #{i} 你好"
        sender = asyncio.create_task(self._send_all(gap)) if n else None
        while time.monotonic() < deadline:
            await self._connect(deadline)
            await self._resend_unacked()
            await self._sync()
            reader = asyncio.create_task(self._read())
            retrier = asyncio.create_task(self._retry_loop())
            done = asyncio.create_task(self._until_done())
            finished, _ = await asyncio.wait({reader, done}, return_when=asyncio.FIRST_COMPLETED,
                                             timeout=max(0.1, deadline - time.monotonic()))
            retrier.cancel()
            if done in finished:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await reader
                break
            done.cancel()
            if reader in finished:
                reader.result()  # raises the ledger's own assertion errors
                code = self._ws.close_code if self._ws is not None else None
                self.closes.append(code or 0)
                if code == 4401:
                    self._token = None
                self._ws = None
                self._node += 1
        if sender is not None:
            sender.cancel()
        missing = [c for c in self.sent if c not in self.acked]
        if missing:
            raise AssertionError(f"{self.name}: {len(missing)} messages never acked, e.g. {missing[:3]}")

    async def _send_all(self, gap: float) -> None:
        for cmid, body in list(self.sent.items()):
            while self._ws is None:
                await asyncio.sleep(0.02)
            await self._send({"type": 2, "msg": body, "cmid": cmid})
            await asyncio.sleep(gap)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for cmid, at in list(self._retry_after.items()):
                if at <= now and cmid not in self.acked:
                    del self._retry_after[cmid]
                    await self._send({"type": 2, "msg": self.sent[cmid], "cmid": cmid})

    async def _until_done(self) -> None:
        while True:
            if self.sent and all(c in self.acked for c in self.sent):
                return
            if not self.sent and self._stop:
                return
            self._unacked_wake.clear()
            await self._unacked_wake.wait()

    def stop(self) -> None:
        """A watcher (no messages of its own) ends its run."""
        self._stop = True
        self._unacked_wake.set()

    async def final_sync(self, timeout: float = 30.0) -> None:
        """Connect (anywhere), sync everything after 0, and close."""
        deadline = time.monotonic() + timeout
        await self._connect(deadline)
        reader = asyncio.create_task(self._read())
        try:
            await self._sync(0)
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await self._synced.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed, Exception):
                await reader
            await self._ws.close()
            self._ws = None


async def user_login(base: str, code: str) -> str:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.post(base + "/api/login", json={"code": code})
        r.raise_for_status()
        return str(r.json()["token"])


async def agent_login(base: str, name: str, password: str = "correct-horse-1") -> str:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.post(base + "/api/agent/login", json={"name": name, "password": password})
        r.raise_for_status()
        return str(r.json()["token"])


def check(ledgers: list[Ledger], rows: list[dict[str, Any]]) -> None:
    """The promises, against what the database holds:
    every acked message is stored exactly once under the id its ack carried; no id names two
    different messages; ids acked to one client only increase; every watcher (agent) has seen every
    acked message after its final sync, and users their own."""
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), "an id is stored twice"
    by_cmid: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r["cmid"] is not None:
            by_cmid.setdefault((r["openid"], r["cmid"]), []).append(r["id"])
    for led in ledgers:
        for cmid, msg_id in led.acked.items():
            row = by_id.get(msg_id)
            assert row is not None, f"{led.name}: {cmid} was acked as {msg_id}, which is not stored"
            assert (row["cmid"], row["body"]) == (cmid, led.sent[cmid]), (led.name, cmid, row)
            stored = by_cmid[(row["openid"], cmid)]
            assert stored == [msg_id], f"{led.name}: {cmid} is stored as {stored}"
        assert led.ack_ids == sorted(led.ack_ids), f"{led.name}: acked ids went backwards: {led.ack_ids}"
        for msg_id, m in led.seen.items():
            row = by_id.get(msg_id)
            assert row is not None, f"{led.name} was shown id {msg_id} ({m['msg']!r}), which is not stored"
            assert (row["body"], row["cmid"], row["openid"]) == (m["msg"], m.get("cmid"), m["openid"])
    acked_ids = {i for led in ledgers for i in led.acked.values()}
    for led in ledgers:
        if led.role == "agent":
            missing = acked_ids - set(led.seen)
            assert not missing, f"{led.name} never saw {len(missing)} acked messages: {sorted(missing)[:5]}"
        else:
            mine = set(led.acked.values())
            assert mine <= set(led.seen), f"{led.name} does not have its own messages after sync"
