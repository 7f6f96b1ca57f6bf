"""Re-checking the tokens of live agent sockets every `KEFU_AGENT_RECHECK_INTERVAL` seconds.

A password change, a disable or a delete closes the agent's sockets at once through a kick on the
broker. Two cases never see that kick: the CLI run beside an embedded server (another process,
no shared broker), and a kick lost on the way (a Redis hiccup). This sweep closes such sockets
(4401) within one interval, and sends the conversations of agents that were disabled or deleted
that way back to the queue. Agents are few, so it costs a lookup or two per agent socket.
"""

from __future__ import annotations

import asyncio
import logging

from kefu.errors import Close
from kefu.node import Node

log = logging.getLogger(__name__)


async def recheck_once(node: Node) -> int:
    """Close agent sockets whose token no longer resolves; how many were closed."""
    conns = [c for c in node.hub.all_conns() if c.session.who.role == "agent" and not c.closing]
    valid: dict[str, bool] = {}
    closed = 0
    for conn in conns:
        d = conn.session.token_digest
        if d not in valid:
            valid[d] = await node.tokens.resolve_digest(d) is not None
        if not valid[d]:
            conn.close_soon(Close.UNAUTHORIZED, "token revoked")
            closed += 1
    await node.desk.requeue_orphans()
    return closed


async def recheck_forever(node: Node, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            if closed := await recheck_once(node):
                log.info("closed %d agent socket(s) whose token was revoked", closed)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a store is down: try again next time, close nothing
            log.warning("agent socket recheck failed: %s", e)
