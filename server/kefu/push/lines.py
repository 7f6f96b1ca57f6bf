"""A byte stream cut into lines, bounded, without I/O (the push port feeds it what it reads).

Reading a connection a chunk at a time and cutting here costs one read per chunk rather than one
per line; a pipelining backend's chunk holds dozens of lines. A line longer than the limit is
never held whole: its bytes are dropped as they arrive and it comes out as `None` (answered
`fail`) once its newline does.
"""

from __future__ import annotations


class Lines:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes in a line, its newline not counted
        self._part = bytearray()  # the start of a line whose newline has not come yet
        self._skipping = False  # the line under way is over the limit: dropped up to its newline

    def feed(self, data: bytes) -> list[bytes | None]:
        """The lines `data` completes, in order, without their newlines; `None` for an over-long one."""
        out: list[bytes | None] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
                out.append(None)
            elif self._part:
                self._part += data[start:end]
                line = bytes(self._part)
                self._part.clear()
                out.append(line if len(line) <= self.limit else None)
            else:
                out.append(data[start:end] if end - start <= self.limit else None)
            start = end + 1
        if not self._skipping and start < len(data):
            self._part += data[start:]
            if len(self._part) > self.limit:
                self._part.clear()
                self._skipping = True
        return out

    def end(self) -> list[bytes | None]:
        """At end of stream: a last line cut off before its newline still counts."""
        if self._skipping:
            self._skipping = False
            return [None]
        if not self._part.strip():
            self._part.clear()
            return []
        line = bytes(self._part)
        self._part.clear()
        return [line]
