"""Caps on open sockets (`/ws` and `/ws/qr`): in all, for QR pages, and per client address.

Sockets are what an anonymous client can hold open for free (a QR page needs no token), and each
costs a file descriptor and memory until it goes; so a process admits at most `total` of them, at
most `qr` of those QR pages (anonymous load cannot crowd out chat), and at most `per_address` from
one client address. Counted per process, in memory, before the WebSocket upgrade: a refusal is
`RateLimited` (HTTP 429 + Retry-After). Pure: the socket edge (ws/admission.py) calls `admit` and
releases the slot when the socket is gone.
"""

from __future__ import annotations

import functools
import ipaddress

from kefu.errors import RateLimited

RETRY_AFTER = 5.0  # seconds; a socket elsewhere closes soon enough on a busy server
FD_RESERVE_MIN = 128  # descriptors kept for the database, Redis, HTTP requests and the push port


@functools.lru_cache(maxsize=4096)  # parsing costs 5.7 µs a connect; a hit 0.1
def address_key(ip: str) -> str:
    """The unit a per-address limit counts: an IPv4 address, or an IPv6 /64 — one subscriber's
    prefix, since a single host may use any of its 2^64 addresses."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return ip[:64]  # not an address (a unix socket, a misconfigured proxy header): as given
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def cap_for_descriptors(wanted: int, nofile: int) -> int:
    """At most `wanted` sockets, and never so many that the process runs out of descriptors for
    everything else (a quarter of the limit, at least FD_RESERVE_MIN, stays free)."""
    if nofile <= 0:
        return wanted
    return max(1, min(wanted, nofile - max(FD_RESERVE_MIN, nofile // 4)))


class Slot:
    """One admitted socket. `release` is idempotent: the handler's end and the connection's loss
    may both call it."""

    __slots__ = ("_caps", "_held", "key", "qr")

    def __init__(self, caps: SocketCaps, key: str, qr: bool) -> None:
        self._caps = caps
        self.key = key
        self.qr = qr
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._caps._release(self)


class SocketCaps:
    def __init__(self, total: int, qr: int, per_address: int) -> None:
        self.total = total
        self.qr_max = qr
        self.per_address = per_address
        self.open = 0
        self.open_qr = 0
        self._by_key: dict[str, int] = {}

    def admit(self, ip: str, qr: bool) -> Slot:
        """A slot for one more socket from `ip`, or `RateLimited`."""
        key = address_key(ip)
        if self.open >= self.total or (qr and self.open_qr >= self.qr_max):
            raise RateLimited("the server is at its socket limit; retry later", retry_after=RETRY_AFTER)
        if self._by_key.get(key, 0) >= self.per_address:
            raise RateLimited("too many open sockets from your address", retry_after=RETRY_AFTER)
        self.open += 1
        self.open_qr += qr
        self._by_key[key] = self._by_key.get(key, 0) + 1
        return Slot(self, key, qr)

    def from_address(self, ip: str) -> int:
        return self._by_key.get(address_key(ip), 0)

    def _release(self, slot: Slot) -> None:
        self.open -= 1
        self.open_qr -= slot.qr
        left = self._by_key.get(slot.key, 0) - 1
        if left > 0:
            self._by_key[slot.key] = left
        else:
            self._by_key.pop(slot.key, None)  # the map holds only addresses with open sockets
