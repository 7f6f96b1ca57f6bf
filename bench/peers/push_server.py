"""A plain `websockets` push server in the seed dialect: the push benchmark's peer.

Pages connect on any path and bind with the QR page frame `{"uid", "ticket", …}` (echoed back) or
with a bare uid (a text frame that is just the uid; nothing is echoed). Backends write one JSON
object per line to the TCP port, `{"uid": …, "ticket"?: …, …}`, and read `ok` when a page bound to
that uid (and, when the page gave one, that ticket) was sent the line, `fail` otherwise.

    python -m bench.peers.push_server --port 9001 --push-port 9002
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.peers.base import HOST, arguments, ready, run, shut

Pages = dict[str, dict[ServerConnection, str | None]]  # uid → {socket: the ticket it bound with}


def parse_bind(raw: str) -> tuple[str, str | None, bool] | None:
    """(uid, ticket, echo?) for a bind frame; None for anything else (a ping, junk)."""
    try:
        obj: Any = json.loads(raw)
    except ValueError:
        obj = raw.strip()
    if isinstance(obj, dict):
        uid, ticket = obj.get("uid"), obj.get("ticket")
        if isinstance(uid, str | int) and not isinstance(uid, bool) and "cmd" not in obj:
            return str(uid), ticket if isinstance(ticket, str) else None, True
        return None
    if isinstance(obj, str | int) and not isinstance(obj, bool) and str(obj):
        return str(obj), None, False
    return None


def push(pages: Pages, line: bytes) -> bytes:
    """Deliver one backend line; the reply line."""
    try:
        obj = json.loads(line)
    except ValueError:
        return b"fail\n"
    if not isinstance(obj, dict) or not isinstance(obj.get("uid"), str | int):
        return b"fail\n"
    bound = pages.get(str(obj["uid"]))
    if not bound:
        return b"fail\n"
    ticket = obj.get("ticket")
    targets = [ws for ws, t in bound.items() if t is None or t == ticket]
    if not targets:
        return b"fail\n"
    broadcast(targets, line.strip().decode())
    return b"ok\n"


async def main(args: Any, stop: asyncio.Future[None]) -> None:
    pages: Pages = {}

    async def page(ws: ServerConnection) -> None:
        uid: str | None = None
        try:
            async for raw in ws:
                bind = parse_bind(raw if isinstance(raw, str) else raw.decode(errors="replace"))
                if bind is None:
                    continue
                if uid is not None:
                    pages.get(uid, {}).pop(ws, None)
                uid, ticket, echo = bind
                pages.setdefault(uid, {})[ws] = ticket
                if echo:
                    await ws.send(raw)
        finally:
            if uid is not None:
                bound = pages.get(uid, {})
                bound.pop(ws, None)
                if not bound:
                    pages.pop(uid, None)

    backends: set[asyncio.StreamWriter] = set()

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backends.add(writer)
        try:
            async for line in reader:
                writer.write(push(pages, line))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            backends.discard(writer)
            writer.close()

    server = await serve(page, HOST, args.port, compression=None)
    tcp = await asyncio.start_server(backend, HOST, args.push_port)
    ready()
    await stop
    for writer in list(backends):
        writer.close()
    await shut(tcp)
    await shut(server)


if __name__ == "__main__":
    parser = arguments(__doc__ or "")
    parser.add_argument("--push-port", type=int, required=True, help="TCP text push port on 127.0.0.1")
    options = parser.parse_args()
    run(lambda stop: main(options, stop), options.max_seconds)
