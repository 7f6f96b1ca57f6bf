"""The push vocabulary carried out, on whatever node the request arrived: publishes through the
broker (so it reaches sockets on every node), group membership in the group store, socket counts.

Every answer is about the moment of the request: pushes are not stored, so a push to nobody is
`delivered: false` (`fail` on the port) and is gone. A group change is answered once it is in
effect on every node holding the uid's pages (kefu/asks.py): a push to the group after it reaches
them, and a count counts them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kefu.background import Background
from kefu.core.page import PageSession
from kefu.core.push import PushTarget, group_change_envelope, uid_channel
from kefu.core.routing import Envelope
from kefu.node import Node
from kefu.push.commands import Command, Count, GroupChange, Online
from kefu.push.counts import GroupCounts
from kefu.push.groups import GroupStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool  # the port's `ok` / `fail`
    body: dict[str, Any]  # the HTTP answer
    line: bytes | None = None  # the port's reply when it is not ok/fail (a count)


class PushService:
    def __init__(self, node: Node, groups: GroupStore, counts: GroupCounts) -> None:
        self.node = node
        self.groups = groups
        self.counts = counts
        self._following = Background(log, "pushes")

    async def start(self) -> None:
        self.node.on_group_change = self.follow
        await self.counts.start()

    async def stop(self) -> None:
        self.node.on_group_change = None
        await self._following.stop()
        await self.counts.stop()

    async def push(self, target: PushTarget) -> int:
        """Nodes that held a socket on one of the target's channels (the broker's counts)."""
        return sum(await self.push_soon(target))

    def push_soon(self, target: PushTarget) -> asyncio.Future[list[int]]:
        """`push` as a future of the broker's counts: the port keeps many in flight, no task each."""
        return self.node.broker.publish_soon(target.channels, target.envelope())

    async def change(self, c: GroupChange) -> int:
        """Remember the membership, then have every node holding the uid's sockets follow it;
        returns once they all have (or `ANSWER_TIMEOUT` passed: a node that died never answers)."""
        if c.op == "join":
            await self.groups.add(c.uid, c.group)
        else:
            await self.groups.remove(c.uid, c.group)
        nodes, answered = await self.node.asks.ask(uid_channel(c.uid), group_change_envelope(c.op, c.group))
        if answered < nodes:
            log.warning("%s of a uid to group %r: %d of %d nodes confirmed it in time",
                        c.op, c.group, answered, nodes)
        return nodes

    def follow(self, channel: str, env: Envelope) -> None:
        """A uid's groups changed: its page sockets on this node join or leave, then the asker hears
        that this node is done (its subscriptions and socket counts in effect)."""
        op, group = env.frame.get("op"), env.frame.get("group")
        changes: list[asyncio.Task[None]] = []
        if op in ("join", "leave") and isinstance(group, str):
            for conn in self.node.hub.channels.get(channel, ()):
                session = conn.session
                if isinstance(session, PageSession) and session.on_group is not None:
                    changes.append(session.on_group(op, group))
        self._following.spawn(self._followed(changes, env.frame), "following a group change")

    async def _followed(self, changes: list[asyncio.Task[None]], frame: dict[str, Any]) -> None:
        try:
            if changes:
                await asyncio.wait(changes)
            await self.counts.flush()
        finally:
            await self.node.asks.answer(frame)

    async def online(self, uid: str) -> bool:
        channel = uid_channel(uid)
        return channel in self.node.hub.channels or await self.node.broker.online(channel)

    async def run(self, cmd: Command) -> Outcome:
        if isinstance(cmd, PushTarget):
            nodes = await self.push(cmd)
            return Outcome(nodes > 0, {"delivered": nodes > 0, "nodes": nodes})
        if isinstance(cmd, GroupChange):
            nodes = await self.change(cmd)
            return Outcome(True, {"ok": True, "uid": cmd.uid, "group": cmd.group, "nodes": nodes})
        if isinstance(cmd, Online):
            online = await self.online(cmd.uid)
            return Outcome(online, {"uid": cmd.uid, "online": online})
        assert isinstance(cmd, Count)
        n = await self.counts.count(cmd.group)
        return Outcome(True, {"group": cmd.group, "count": n}, b'{"count":%d}\n' % n)
