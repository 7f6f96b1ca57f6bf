"""The opening handshake kefu answers itself (server/kefu/ws/handshake.py) against websockets' own.

The invariant: whenever `plain_accept` answers, websockets would have accepted the same request
with the same `Sec-WebSocket-Accept` and nothing negotiated; for everything else websockets still
judges, so a bad upgrade gets websockets' error answer (checked over a bare socket)."""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sanic.compat import Header
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from kefu.ws.handshake import plain_accept, switching_protocols
from tests.support.server import KefuServer

embedded_only = pytest.mark.parametrize("deployment", ["embedded"], indirect=True)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # … and its accept value


@dataclass
class Head:
    """What `plain_accept` reads of Sanic's request."""
    version: str
    headers: Header


def websockets_answer(pairs: list[tuple[str, str]]) -> tuple[int, str | None, bool]:
    """websockets' own verdict on a GET with these headers: status, accept value, and whether it
    negotiated a subprotocol or an extension."""
    proto = ServerProtocol()  # as Sanic makes it for kefu: no subprotocols, no extensions, any origin
    h = Headers()
    for k, v in pairs:
        h[k] = v
    response = proto.accept(Request("/ws/qr", h))
    negotiated = any(h in response.headers for h in ("Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"))
    return response.status_code, response.headers.get("Sec-WebSocket-Accept"), negotiated


def plain(pairs: list[tuple[str, str]], version: str = "1.1") -> str | None:
    return plain_accept(Head(version, Header(pairs)))


BASE = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]


def with_(**changes: str | None) -> list[tuple[str, str]]:
    """BASE with headers replaced (a value) or removed (None); names use _ for -."""
    names = {k.replace("_", "-").lower(): v for k, v in changes.items()}
    out = [(k, v) for k, v in BASE if k.lower() not in names]
    return out + [(k, v) for k, v in names.items() if v is not None]


def test_an_ordinary_upgrade_is_answered_as_websockets_would():
    for pairs in (BASE, with_(connection="keep-alive, Upgrade"), with_(upgrade="WebSocket"),
                  with_(origin="https://shop.example"),
                  with_(sec_websocket_extensions="permessage-deflate; client_max_window_bits")):
        assert plain(pairs) == ACCEPT
        assert websockets_answer(pairs) == (101, ACCEPT, False)
    assert switching_protocols(ACCEPT) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n\r\n")


@pytest.mark.parametrize("pairs", [
    with_(upgrade=None), with_(upgrade="h2c"), with_(upgrade="websocket, h2c"),
    with_(connection=None), with_(connection="keep-alive"), with_(connection="Upgrade;;"),
    with_(sec_websocket_key=None), with_(sec_websocket_key="not base64!"),
    with_(sec_websocket_key=base64.b64encode(b"x" * 15).decode()),
    with_(sec_websocket_version=None), with_(sec_websocket_version="8"),
    [*BASE, ("Sec-WebSocket-Key", KEY)], [*BASE, ("Sec-WebSocket-Version", "13")],
    [*BASE, ("Origin", "https://a"), ("Origin", "https://b")],
], ids=lambda p: "|".join(f"{k}:{v}" for k, v in p if k.lower() != "host"))
def test_a_faulty_upgrade_is_left_to_websockets_which_refuses_it(pairs):
    assert plain(pairs) is None
    status, _, _ = websockets_answer(pairs)
    assert status in (400, 426), status


def test_a_subprotocol_offered_or_http_1_0_is_left_to_websockets():
    assert plain(with_(sec_websocket_protocol="chat")) is None
    assert websockets_answer(with_(sec_websocket_protocol="chat")) == (101, ACCEPT, False)
    assert plain(BASE, version="1.0") is None


HEADER_VALUES = {
    "Upgrade": ["websocket", "WebSocket", "h2c", "websocket, h2c", "", "web socket"],
    "Connection": ["Upgrade", "upgrade", "keep-alive, Upgrade", "keep-alive", "Upgrade,", ",", "Up grade"],
    "Sec-WebSocket-Key": [KEY, "", "AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAA", "dGhl IHNh"],
    "Sec-WebSocket-Version": ["13", "8", "13, 8", ""],
    "Origin": ["https://a", "null"],
    "Sec-WebSocket-Extensions": ["permessage-deflate", "x; y=\"z\""],
    "Sec-WebSocket-Protocol": ["", "chat", "a, b"],
}


def edit(pairs: list[tuple[str, str]], how: str, name: str, value: str) -> list[tuple[str, str]]:
    """`pairs` with header `name` dropped, set to `value`, or `value` added beside what is there."""
    if how != "add":
        pairs = [(k, v) for k, v in pairs if k != name]
    return pairs if how == "drop" else [*pairs, (name, value)]


EDITS = [(how, name, value) for name, values in sorted(HEADER_VALUES.items()) for value in values
         for how in ("drop", "set", "add")]


def agrees(pairs: list[tuple[str, str]]) -> bool:
    """The invariant for one request; True when kefu answered it itself."""
    accept = plain([("Host", "x"), *pairs])
    if accept is not None:
        assert websockets_answer([("Host", "x"), *pairs]) == (101, accept, False), pairs
    return accept is not None


def test_every_single_edit_of_an_upgrade_is_answered_alike_and_many_by_kefu_itself():
    """Every header of an ordinary upgrade dropped, replaced or repeated, one at a time."""
    start = [(k, v) for k, v in BASE if k != "Host"]
    answered = [agrees(edit(start, *e)) for e in EDITS]
    assert sum(answered) >= 20, sum(answered)  # the check is not vacuous
    assert not all(answered)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(EDITS), max_size=3))
def test_whatever_kefu_accepts_itself_websockets_accepts_identically(edits):
    pairs = [(k, v) for k, v in BASE if k != "Host"]
    for e in edits:
        pairs = edit(pairs, *e)
    agrees(pairs)


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection; the answer's head (up to the blank line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        return head


@embedded_only
def test_the_server_answers_upgrades_itself_or_through_websockets(server: KefuServer):
    def request(extra: str, key: str = KEY) -> bytes:
        return (f"GET /ws/qr HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()

    plain_head = exchange(server.port, request(""))
    assert plain_head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n" in plain_head
    # A subprotocol offered goes through websockets, which accepts without choosing one.
    offered = exchange(server.port, request("Sec-WebSocket-Protocol: chat\r\n"))
    assert offered.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol" not in offered
    # A bad key: websockets' 400, not a socket.
    assert exchange(server.port, request("", key="short")).startswith(b"HTTP/1.1 400 ")
