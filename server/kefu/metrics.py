"""Prometheus metrics. Served on the metrics bind (`KEFU_METRICS_HOST:KEFU_METRICS_PORT`), summed over
every worker of this machine by prometheus_client's multiprocess mode (see `metrics_server`).

Gauges name how workers combine: `livesum` adds up the workers that are alive (a dead worker's
sockets and queue are gone with it). docs/operations.md lists every metric; the alert rules and the
dashboard in deploy/ use exactly these names (a test checks).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, values


def _cached_pid() -> Callable[[], int]:
    """The multiprocess mode's values ask for the pid at every update, to notice a fork: a system
    call each, four per chat message (0.36 µs of an increment's 1.15). Cached here instead, and
    refreshed in a forked child, which is what that check is for."""
    pid = [os.getpid()]
    os.register_at_fork(after_in_child=lambda: pid.__setitem__(0, os.getpid()))
    return lambda: pid[0]


if values.ValueClass is not values.MutexValue:  # multiprocess mode: set before any metric exists
    values.ValueClass = values.MultiProcessValue(process_identifier=_cached_pid())

class Tally:
    """A counter bumped on every message, summed during one loop iteration and added at its end:
    a multiprocess increment is an mmap write and two checks, about 1.0 µs, and one iteration
    takes the frames of many sockets at once. An increment is visible once its iteration ends."""

    __slots__ = ("_counter", "_n")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._n = 0

    def inc(self) -> None:
        if not self._n:
            asyncio.get_running_loop().call_soon(self._add)
        self._n += 1

    def _add(self) -> None:
        n, self._n = self._n, 0
        self._counter.inc(n)


CONNECTIONS = Gauge("kefu_connections", "Open WebSocket connections", ["role"],
                    multiprocess_mode="livesum")
_CONNECTIONS_OF: dict[str, Gauge] = {}


def connections(role: str) -> Gauge:
    """The connections gauge of one role, looked up once: `labels()` validates and locks per call."""
    gauge = _CONNECTIONS_OF.get(role)
    if gauge is None:
        gauge = _CONNECTIONS_OF[role] = CONNECTIONS.labels(role)
    return gauge


FRAMES_RECEIVED = Counter("kefu_frames_in_total", "Text frames received")
FRAMES_IN = Tally(FRAMES_RECEIVED)
ERRORS_SENT = Counter("kefu_error_frames_total", "Error frames sent", ["code"])
CLOSES = Counter("kefu_closes_total", "Connections closed by the server", ["code"])
MESSAGES_ACCEPTED = Counter("kefu_messages_accepted_total", "Chat messages accepted", ["sender"])
# Its two series, looked up once: `labels()` per message cost as much as the increment.
ACCEPTED_FROM = {sender: Tally(MESSAGES_ACCEPTED.labels(sender)) for sender in ("user", "agent")}
MESSAGES_STORED = Counter("kefu_messages_stored_total", "Chat messages written to the database")
WRITE_ERRORS = Counter("kefu_write_errors_total", "Failed database batch writes (retried)")
WRITE_SECONDS = Histogram("kefu_write_batch_seconds", "Database batch write latency")
JOURNAL_PENDING = Gauge("kefu_journal_pending", "Accepted messages not yet stored in the database",
                        multiprocess_mode="livesum")
BROKER_RECONNECTS = Counter("kefu_broker_reconnects_total",
                            "Times the broker lost its subscription connection and reconnected")
ID_COLLISIONS = Counter("kefu_id_collisions_total",
                        "Rows refused because their id already names a different message")
REDIS_RESTORES = Counter("kefu_redis_restores_total",
                         "Times this process found Redis restarted or emptied and restored its state")
