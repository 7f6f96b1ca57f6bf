"""The hub's channel subscriptions (`kefu.hub.Hub`): this node is subscribed to a channel exactly
while a socket here holds it, however joins and leaves interleave with the broker's slow replies.
A socket joining or leaving a channel that others hold takes no lock and makes no broker call."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from kefu.hub import Hub


class SlowBroker:
    """Records subscribe / unsubscribe; each waits for `gate` while it is closed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.subscribed: set[str] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        self.settles = 0

    async def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))
        await self.gate.wait()
        self.subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))
        await self.gate.wait()
        self.subscribed.discard(channel)

    async def settled(self) -> None:
        self.settles += 1


class Socket:
    """What the hub reads of a `Conn`: its session's channels and role (hashed by identity)."""

    def __init__(self, *channels: str) -> None:
        self.session = SimpleNamespace(channels=list(channels), who=SimpleNamespace(role="page"))


def socket(*channels: str) -> Any:
    return Socket(*channels)


async def test_sockets_joining_and_leaving_a_held_channel_make_no_broker_call() -> None:
    broker = SlowBroker()
    hub = Hub(broker)  # type: ignore[arg-type]
    a, b, c = socket("pages"), socket("pages"), socket("pages")
    for s in (a, b, c):
        await hub.add(s)
    assert broker.calls == [("subscribe", "pages")]
    assert broker.settles == 3  # each waits until its channels are in effect
    await hub.remove(a)
    await hub.remove(b)
    assert broker.calls == [("subscribe", "pages")] and hub.channels["pages"] == {c}
    await hub.remove(c)
    assert broker.calls == [("subscribe", "pages"), ("unsubscribe", "pages")]
    assert "pages" not in hub.channels and not broker.subscribed


async def test_a_socket_arriving_while_the_last_one_unsubscribes_ends_subscribed() -> None:
    broker = SlowBroker()
    hub = Hub(broker)  # type: ignore[arg-type]
    first, second = socket("page:u1"), socket("page:u1")
    await hub.add(first)
    broker.gate.clear()
    leaving = asyncio.create_task(hub.remove(first))
    await asyncio.sleep(0)  # its unsubscribe is under way, held at the gate
    arriving = asyncio.create_task(hub.add(second))
    await asyncio.sleep(0)
    assert not arriving.done()  # it waits for the unsubscribe: the two never interleave
    broker.gate.set()
    await asyncio.gather(leaving, arriving)
    assert broker.calls == [("subscribe", "page:u1"), ("unsubscribe", "page:u1"), ("subscribe", "page:u1")]
    assert broker.subscribed == {"page:u1"} and hub.channels["page:u1"] == {second}


async def test_a_socket_joining_while_the_first_one_subscribes_waits_for_it() -> None:
    broker = SlowBroker()
    hub = Hub(broker)  # type: ignore[arg-type]
    first, second = socket("page:u2"), socket("page:u2")
    broker.gate.clear()
    subscribing = asyncio.create_task(hub.add(first))
    await asyncio.sleep(0)
    joining = asyncio.create_task(hub.add(second))
    await asyncio.sleep(0)
    assert not joining.done()
    leaving = asyncio.create_task(hub.remove(second))  # gone before it was ever in
    broker.gate.set()
    await asyncio.gather(subscribing, joining, leaving)
    assert broker.calls == [("subscribe", "page:u2")]
    assert broker.subscribed == {"page:u2"} and hub.channels["page:u2"] == {first}
