"""A relay with no durability: user → agents over `websockets`, ids from a counter, no storage.

The floor for kefu's relay: the least a Python server must do to relay a chat message and ack
it, in kefu's v2 frames so the same load generator drives both. The token names the socket:
`/ws?token=user:<openid>` or `/ws?token=agent:<name>`; anything else is closed with 4401.

- user `{"type": 2, "msg", "cmid"?}` → every agent gets `{"msg", "openid", "id", "ts", "from": "user",
  "cmid"?}`; the sender gets `{"cmd": "ack", "cmid", "id", "ts", "delivered"}` when it gave a cmid;
- agent `{"type": 1, "openid", "msg", "cmid"?}` → that user's sockets, acked the same way;
- `{"cmd": "ping"}` → `{"cmd": "pong", "ts"}`.

    python -m bench.peers.relay_floor --port 9003
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.peers.base import HOST, arguments, ready, run, shut


class Relay:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.agents: set[ServerConnection] = set()
        self.users: dict[str, set[ServerConnection]] = {}

    async def socket(self, ws: ServerConnection) -> None:
        token = parse_qs(urlsplit(ws.request.path if ws.request else "").query).get("token", [""])[0]
        role, _, name = token.partition(":")
        if role not in ("user", "agent") or not name:
            await ws.close(4401, "invalid token")
            return
        hello: dict[str, Any] = {"cmd": "hello", "role": role, "heartbeat": 40}
        hello |= {"openid": name} if role == "user" else {"agent": {"id": 1, "name": name}}
        await ws.send(json.dumps(hello))
        mine = self.agents if role == "agent" else self.users.setdefault(name, set())
        mine.add(ws)
        try:
            async for raw in ws:
                await self.frame(ws, role, name, raw)
        finally:
            mine.discard(ws)
            if role == "user" and not mine:
                self.users.pop(name, None)

    async def frame(self, ws: ServerConnection, role: str, name: str, raw: str | bytes) -> None:
        try:
            f = json.loads(raw)
        except ValueError:
            return
        if not isinstance(f, dict):
            return
        if f.get("cmd") == "ping":
            await ws.send(json.dumps({"cmd": "pong", "ts": int(time.time() * 1000)}))
            return
        if not isinstance(f.get("msg"), str):
            return
        msg_id, ts = next(self.ids), int(time.time() * 1000)
        if role == "user" and f.get("type") == 2:
            out: dict[str, Any] = {"msg": f["msg"], "openid": name, "id": msg_id, "ts": ts, "from": "user"}
            to: set[ServerConnection] = self.agents
        elif role == "agent" and f.get("type") == 1 and isinstance(f.get("openid"), str):
            out = {"msg": f["msg"], "id": msg_id, "ts": ts, "openid": f["openid"], "from": "agent",
                   "agent": name}
            to = self.users.get(f["openid"], set())
        else:
            return
        cmid = f.get("cmid")
        if isinstance(cmid, str):
            out["cmid"] = cmid
        broadcast(to, json.dumps(out, ensure_ascii=False))
        if isinstance(cmid, str):
            await ws.send(json.dumps({"cmd": "ack", "cmid": cmid, "id": msg_id, "ts": ts,
                                      "delivered": bool(to)}))


async def main(args: Any, stop: asyncio.Future[None]) -> None:
    relay = Relay()
    server = await serve(relay.socket, HOST, args.port, compression=None, max_size=2**20)
    ready()
    await stop
    await shut(server)


if __name__ == "__main__":
    options = arguments(__doc__ or "").parse_args()
    run(lambda stop: main(options, stop), options.max_seconds)
