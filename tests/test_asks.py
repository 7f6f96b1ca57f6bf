"""Asks (kefu/asks.py) on the in-process broker: answered by every receiver, or given up on."""

from __future__ import annotations

import asyncio
import time

from kefu.asks import Asks, Tally
from kefu.broker.local import LocalBroker
from kefu.core.routing import Envelope


async def asks_on_a_local_broker(on_request) -> Asks:  # type: ignore[no-untyped-def]
    broker = LocalBroker()
    asks = Asks(broker, "n1")

    def on_envelope(channel: str, env: Envelope) -> None:
        if env.kind == "answer":
            asks.answered(env.frame)
        else:
            on_request(asks, env)

    await broker.start(on_envelope, lambda: None)
    await asks.start()
    return asks


async def test_an_ask_returns_once_every_receiver_answered():
    acted: list[str] = []

    def act_later(asks: Asks, env: Envelope) -> None:
        async def act() -> None:
            await asyncio.sleep(0.05)
            acted.append(env.frame["op"])
            await asks.answer(env.frame)
        asyncio.get_running_loop().create_task(act())

    asks = await asks_on_a_local_broker(act_later)
    await asks.broker.subscribe("uid:7")
    assert await asks.ask("uid:7", Envelope("group", "backend", frame={"op": "join"})) == (1, 1)
    assert acted == ["join"], "answered only after the receiver acted"
    started = time.monotonic()
    assert await asks.ask("uid:nobody", Envelope("group", "backend", frame={"op": "join"})) == (0, 0)
    assert time.monotonic() - started < 0.5, "nobody received it: nothing to wait for"


async def test_a_receiver_that_never_answers_is_given_up_on():
    asks = await asks_on_a_local_broker(lambda asks, env: None)
    await asks.broker.subscribe("uid:7")
    started = time.monotonic()
    assert await asks.ask("uid:7", Envelope("group", "backend", frame={}), timeout=0.2) == (1, 0)
    assert 0.2 <= time.monotonic() - started < 1.0
    asks.answered({"ask": "1"})  # a late answer to a closed ask is ignored
    asks.answered({"ask": ["not", "an", "id"]})


def test_a_tally_counts_answers_that_come_before_the_publish_returns():
    loop = asyncio.new_event_loop()
    try:
        tally = Tally(loop.create_future())
        tally.add()
        tally.add()
        assert not tally.done.done()
        tally.expect(2)
        assert tally.done.done()
    finally:
        loop.close()
