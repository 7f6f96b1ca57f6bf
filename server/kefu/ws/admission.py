"""Admitting sockets: the caps of core/admission.py, applied before the WebSocket upgrade.

A request middleware runs for `/ws`, `/ws/qr` and `/ws/push` before Sanic's handshake; a socket over a cap is
answered HTTP 429 with Retry-After and never upgraded. The slot it takes is tied to the TCP
connection (the protocol object), so it is given back however the socket ends — the handler
returning, a failed handshake, the peer vanishing.

At start the process raises its soft descriptor limit to the hard one (as Go's runtime does) and
keeps the socket cap below what the descriptors allow.
"""

from __future__ import annotations

import logging
import resource

from sanic import Request, Sanic

from kefu.config import Settings
from kefu.context import ctx
from kefu.core.admission import Slot, SocketCaps, cap_for_descriptors

log = logging.getLogger(__name__)

#: Socket paths, and whether they are anonymous page sockets (QR login and push pages), which
#: have their own, smaller cap.
SOCKET_PATHS = {"/ws": False, "/ws/qr": True, "/ws/push": True}


def descriptor_limit() -> int:
    """The soft RLIMIT_NOFILE after raising it as far as allowed (0: unknown or unlimited)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    except (OSError, ValueError):
        return 0
    return 0 if soft == resource.RLIM_INFINITY else int(soft)


def make_caps(settings: Settings) -> SocketCaps:
    nofile = descriptor_limit()
    total = cap_for_descriptors(settings.max_sockets, nofile)
    if total < settings.max_sockets:
        log.warning("at most %d sockets (KEFU_MAX_SOCKETS=%d, but the descriptor limit is %d): "
                    "raise LimitNOFILE / ulimit -n", total, settings.max_sockets, nofile)
    return SocketCaps(total, min(settings.max_qr_sockets, total), settings.max_sockets_per_ip)


def hold(request: Request, slot: Slot) -> None:
    """Tie `slot` to the request's connection (released with it, or by `release`)."""
    protocol = request.transport.get_protocol()
    if hasattr(protocol, "hold_slot"):
        protocol.hold_slot(slot)
    else:  # not kefu's protocol (an embedding app): the handler's end releases it
        request.ctx.socket_slot = slot


def release(request: Request) -> None:
    """The socket's handler is done: give its slot back now rather than at TCP close."""
    slot = getattr(request.ctx, "socket_slot", None)
    if slot is not None:
        slot.release()
    protocol = request.transport.get_protocol()
    if hasattr(protocol, "release_slot"):
        protocol.release_slot()


def install(app: Sanic, settings: Settings) -> None:
    @app.on_request
    async def admit_socket(request: Request) -> None:
        qr = SOCKET_PATHS.get(request.path)
        if qr is None:
            return
        caps = ctx(request).socket_caps
        hold(request, caps.admit(request.client_ip, qr))  # RateLimited → 429 + Retry-After
