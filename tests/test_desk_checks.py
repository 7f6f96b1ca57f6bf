"""The desk's per-message check, driven without sockets or a database: a busy conversation costs
one check at a time (and at most one more round), not one per message queued behind the lock."""

from __future__ import annotations

import asyncio
from typing import Any

from kefu.desk import Desk
from kefu.store.desk import AgentSlot, State


class SlowStore:
    """Just what the check reads: each state read takes a moment, like a database round trip."""

    def __init__(self, status: str = "open") -> None:
        self.status = status
        self.state_reads = 0
        self.reopens = 0

    async def state(self, openid: str) -> State:
        self.state_reads += 1
        status = self.status  # what the database had when it was read
        await asyncio.sleep(0.01)
        return State(status, 7 if status != "open" else None)

    async def reopen(self, openid: str) -> bool:
        self.reopens += 1
        self.status = "open"
        return True


def desk(store: SlowStore) -> Desk:
    d = Desk(store=store, presence=None, broker=None, local_channels=lambda: (),  # type: ignore[arg-type]
             accept=None, default_limit=5, auto_assign=False)  # type: ignore[arg-type]

    async def changed(*_: Any, **__: Any) -> None:
        return None
    d._changed = changed  # type: ignore[method-assign,assignment]
    return d


async def test_many_messages_of_one_conversation_share_one_check_and_one_more_round():
    store = SlowStore()
    d = desk(store)
    await asyncio.gather(*(d.on_user_message("o_busy") for _ in range(100)))
    # One check; the 99 that came during it asked for another round, which the check's outcome
    # (nobody could take it, and nothing changed since) makes unnecessary.
    assert store.state_reads == 1
    assert d.team.still_waiting("o_busy")
    await d.on_user_message("o_busy")
    assert store.state_reads == 1 and not d._checking
    d.team.changes += 1  # something changed (an agent came online, say): the next message checks
    await asyncio.gather(*(d.on_user_message("o_busy") for _ in range(10)))
    assert store.state_reads == 2


async def test_a_message_during_a_check_still_reopens_a_conversation_resolved_meanwhile():
    store = SlowStore()
    d = desk(store)
    first = asyncio.create_task(d.on_user_message("o_x"))
    await asyncio.sleep(0.001)  # the first check has read "open"
    store.status = "resolved"  # an agent resolves it
    d.team.changes += 1  # (as the broker's conversation frame would)
    await d.on_user_message("o_x")  # the user writes again while the check runs
    await first
    assert store.state_reads == 2  # the second round saw "resolved"
    assert store.reopens == 1 and store.status == "open"


async def test_checks_of_different_conversations_do_not_wait_for_each_other():
    store = SlowStore()
    d = desk(store)
    await asyncio.gather(*(d.on_user_message(f"o_{i}") for i in range(20)))
    assert store.state_reads == 20


async def test_messages_during_a_check_start_no_task_each_and_still_get_their_round():
    store = SlowStore()
    d = desk(store)
    d.user_wrote("o_busy")  # the first message starts the check in the background
    await asyncio.sleep(0.001)
    assert len(d.background._tasks) == 1 and "o_busy" in d._checking
    for _ in range(50):  # the user keeps writing while it runs
        d.user_wrote("o_busy")
    assert len(d.background._tasks) == 1  # no task per message: the running check was asked again
    store.status = "resolved"  # meanwhile an agent resolves it
    d.team.changes += 1
    await asyncio.wait(list(d.background._tasks))
    assert store.state_reads == 2 and store.reopens == 1  # the extra round saw it and reopened it
    assert not d._checking


class FullTeamStore(SlowStore):
    """Two agents, both at their limit: every lookup of who has room is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.queue: list[str] = []

    async def agents(self) -> list[AgentSlot]:
        self.lookups += 1
        return [AgentSlot(1, "a", False, False, 2), AgentSlot(2, "b", False, False, 2)]

    async def loads(self) -> dict[int, int]:
        return {1: 2, 2: 2}

    async def waiting(self, limit: int) -> list[str]:
        return self.queue[:limit]


async def test_a_queue_behind_full_agents_looks_their_loads_up_once_until_something_changes():
    store = FullTeamStore()
    d = desk(store)
    d.auto_assign = True
    await asyncio.gather(*(d.on_user_message(f"o_{i}") for i in range(20)))
    assert store.state_reads == 20  # each conversation's own state (a resolved one reopens)
    assert store.lookups == 1, "every agent was full: the other 19 needed no lookup"
    assert all(d.team.still_waiting(f"o_{i}") for i in range(20))
    d.team.apply({"cmd": "conversation", "openid": "o_old", "status": "resolved", "event": "resolved"})
    await d.on_user_message("o_new")  # room may have been made: look again
    assert store.lookups == 2
    await d.on_user_message("o_newer")
    assert store.lookups == 2
    store.queue = ["o_0", "o_1"]
    await d.drain()  # an agent's console announced itself: its frame may not have arrived yet
    assert store.lookups == 3
