"""A WebSocket client on a bare TCP socket, for clients no library would be: one that never reads,
one that sends its handshake a byte at a time. Blocking, small, and only what the tests need."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from dataclasses import dataclass

CONT, TEXT, CLOSE, PING, PONG = 0x0, 0x1, 0x8, 0x9, 0xA


def handshake_request(path: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One masked client frame (`fin` False: a fragment with more to come)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass
class Frame:
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if self.opcode == CLOSE and self.payload else None


class RawWs:
    def __init__(self, sock: socket.socket, status: int, rest: bytes) -> None:
        self.sock = sock
        self.status = status
        self._buf = rest

    @classmethod
    def connect(cls, port: int, path: str, rcvbuf: int | None = None, extra: str = "") -> RawWs:
        sock = socket.socket()
        if rcvbuf is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        sock.sendall(handshake_request(path, extra=extra))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: nothing after the head is taken from the kernel
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
        return cls(sock, status, b"")

    def send_text(self, text: str) -> None:
        self.sock.sendall(frame(TEXT, text.encode()))

    def send_ping(self, data: bytes = b"") -> None:
        self.sock.sendall(frame(PING, data))

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("EOF")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        return Frame(b0 & 0x0F, self._read(n, deadline))

    def read_until_close(self, timeout: float = 10.0) -> tuple[int | None, int]:
        """Read (and drop) frames until the close frame: (its code, frames before it). The code is
        None when the server cut the connection without one."""
        deadline = time.monotonic() + timeout
        count = 0
        try:
            while True:
                f = self.read_frame(max(0.01, deadline - time.monotonic()))
                if f.opcode == CLOSE:
                    return f.close_code, count
                count += 1
        except (ConnectionError, OSError):
            return None, count

    def close(self) -> None:
        self.sock.close()
