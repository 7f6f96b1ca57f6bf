"""The push vocabulary, one JSON object per request, as HTTP (`POST /api/push`) and the TCP port
take it. Pure.

Without a `"kefu"` key (or with `"kefu": "push"`) the object is a push (core/push.py decides its
target). Otherwise `"kefu"` names what GatewayWorker's Gateway class did for its backends:

| `kefu`   | fields             | does                                         |
|----------|--------------------|----------------------------------------------|
| `join`   | `uid`/`task_id`, `group` | the uid's sockets join the group, now and after every reconnect |
| `leave`  | `uid`/`task_id`, `group` | … leave it                             |
| `online` | `uid`/`task_id`    | is a page bound to it on any node             |
| `count`  | `group`            | how many page sockets are in the group, on every node |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kefu.core.push import PushError, PushTarget, norm_group, norm_name, norm_uid, parse_push

COMMANDS = ("push", "join", "leave", "online", "count")


@dataclass(frozen=True, slots=True)
class GroupChange:
    op: Literal["join", "leave"]
    uid: str
    group: str


@dataclass(frozen=True, slots=True)
class Online:
    uid: str


@dataclass(frozen=True, slots=True)
class Count:
    group: str


Command = PushTarget | GroupChange | Online | Count


def _bound_id(obj: dict) -> str:
    """The id a page is bound to: a `uid` (A-Za-z0-9_-), or a GatewayWorker `task_id`."""
    if "uid" in obj:
        return norm_uid(obj["uid"])
    if "task_id" in obj:
        return norm_name(obj["task_id"], "task_id")
    raise PushError("name the uid (or task_id)")


def parse_command(obj: object, *, ticket_required: bool) -> Command:
    if not isinstance(obj, dict):
        raise PushError("a push must be a JSON object")
    what = obj.get("kefu", "push")
    if what == "push":
        return parse_push(obj, ticket_required=ticket_required)
    if what in ("join", "leave"):
        if "group" not in obj:
            raise PushError(f"{what} needs a group")
        return GroupChange(what, _bound_id(obj), norm_group(obj["group"]))
    if what == "online":
        return Online(_bound_id(obj))
    if what == "count":
        if "group" not in obj:
            raise PushError("count needs a group")
        return Count(norm_group(obj["group"]))
    raise PushError(f"kefu must be one of {', '.join(COMMANDS)}")
