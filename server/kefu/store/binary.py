"""Binary values in statements, on both databases.

aiomysql escapes a `bytes` parameter with a PyMySQL helper that PyMySQL 1.1+ no longer provides
(`escape_bytes_prefixed` is a placeholder string there: PyMySQL issue #1274), so any INSERT of
bytes through aiomysql fails with "'str' object is not callable". On MySQL the value is therefore
sent as hex text and turned back into bytes by the server (`UNHEX`), which is what PyMySQL's own
`escape_bytes` does (`_binary X'…'`): twice the size on the wire, so a value must stay under half
of `max_allowed_packet`. SQLite takes the bytes as they are.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def binary(dialect: str, data: bytes) -> Any:
    """`data` as a statement value for `dialect` ("mysql" or "sqlite")."""
    if dialect == "mysql":
        return sa.func.unhex(data.hex())
    return data
