"""What every node knows about the team, in memory: who holds which conversation, and who is
online. Pure (no I/O): the node fills it from the database at start and after a broker gap, and
keeps it current from the assignment and presence envelopes every node receives on the `desk`
channel; `Session.deliver` reads it to decide, per socket, who gets a conversation's frames.

Only assigned conversations are held: one that is not here is waiting in the queue (open) or
resolved, and a user message in it goes to every available agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["open", "assigned", "resolved"]
Presence = Literal["online", "away", "offline"]
STATUSES: tuple[Status, ...] = ("open", "assigned", "resolved")


def conversation_frame(openid: str, status: str, assignee: dict[str, Any] | None,
                       event: str, by: dict[str, Any] | None, note: str = "") -> dict[str, Any]:
    """A conversation's status changed (docs/protocol.md §10.3)."""
    out: dict[str, Any] = {"cmd": "conversation", "openid": openid, "status": status,
                           "assignee": assignee, "event": event, "by": by}
    if note:
        out["note"] = note
    return out


def presence_frame(agent_id: int, name: str, status: str) -> dict[str, Any]:
    return {"cmd": "presence", "agent": {"id": agent_id, "name": name}, "status": status}


TAKEN = ("assigned", "claimed")  # events of a conversation taken from the queue
WAITING_MEMORY = 10_000  # conversations remembered as "waiting, and nobody had room"


@dataclass
class Team:
    assignee: dict[str, int] = field(default_factory=dict)
    presence: dict[int, str] = field(default_factory=dict)
    #: Bumped by every change the team hears of; a conversation found waiting with nobody to take
    #: it is not looked up again (no database work per message) until something has changed.
    changes: int = 0
    _waiting: dict[str, int] = field(default_factory=dict)
    _full_at: int | None = None  # `changes` when every agent was last found full or away

    def load(self, assigned: dict[str, int], presence: dict[int, str]) -> None:
        self.assignee = dict(assigned)
        self.presence.update(presence)
        self.changes += 1

    def still_waiting(self, openid: str) -> bool:
        """This conversation waited in the queue with nobody to take it, and nothing changed since."""
        return self._waiting.get(openid) == self.changes

    def nobody_has_room(self) -> bool:
        """No agent had room when last looked, and nothing changed since: a newly waiting
        conversation needs no lookup of every agent's load either."""
        return self._full_at == self.changes

    def found_full(self, changes: int) -> None:
        """Every agent was full or away, as of `changes` (if more changed since, it says nothing)."""
        self._full_at = changes

    def room_may_be_made(self) -> None:
        """Room may have been made that no frame has told of yet (an agent's console announced
        itself, a departing agent's conversations were requeued): nothing remembered holds."""
        self.changes += 1

    def nobody_took(self, openid: str) -> None:
        if len(self._waiting) >= WAITING_MEMORY:
            self._waiting.clear()
        self._waiting[openid] = self.changes

    def apply(self, frame: dict[str, Any]) -> None:
        """Take in a `conversation` or `presence` frame. `changes` counts only what may make room
        for a waiting conversation: a conversation taken (assigned, claimed) frees none, so the
        desk's first assignments do not send every waiting conversation back to the database."""
        cmd = frame.get("cmd")
        if cmd == "presence" or (cmd == "conversation" and frame.get("event") not in TAKEN):
            self.changes += 1
        if cmd == "conversation":
            openid = frame.get("openid")
            who = frame.get("assignee")
            if not isinstance(openid, str):
                return
            if frame.get("status") == "assigned" and isinstance(who, dict) and isinstance(who.get("id"), int):
                self.assignee[openid] = who["id"]
            else:
                self.assignee.pop(openid, None)
        elif cmd == "presence":
            agent = frame.get("agent") or {}
            if isinstance(agent.get("id"), int) and isinstance(frame.get("status"), str):
                self.presence[agent["id"]] = frame["status"]

    def holder(self, openid: str) -> int | None:
        return self.assignee.get(openid)

    def available(self, agent_id: int | None) -> bool:
        """Online (not away); an agent never announced counts as online (a socket is open)."""
        return self.presence.get(agent_id or 0, "online") != "away"

    def follows(self, agent_id: int | None, watch_all: bool, openid: str) -> bool:
        """Whether an agent's socket gets this conversation's live frames: its holder; an admin
        watching everything; anyone available while it waits in the queue."""
        holder = self.assignee.get(openid)
        if holder is not None:
            return holder == agent_id or watch_all
        return watch_all or self.available(agent_id)
