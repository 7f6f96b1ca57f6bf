"""The one JSON reader and writer: socket frames, HTTP bodies, push lines, callback JSON, fan-out.

JSON itself is looser than what every peer can take: Python reads `NaN`, `Infinity` and `1e999`
(which becomes infinity) and `"\\ud800"` (a lone surrogate, which no UTF-8 peer can receive), and
nests as deep as the recursion limit allows. Anything read here is safe to store, relay and write
back; anything written here is valid JSON in valid UTF-8, or `ValueError`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kefu.errors import BadJson

MAX_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:32]} is out of range")
    return v


_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _check(value: Any, depth: int) -> None:
    """Nesting bound, and strings that UTF-8 can carry (escapes can spell lone surrogates)."""
    if depth > MAX_DEPTH:
        raise BadJson(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check(v, depth + 1)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadJson("JSON string is not valid Unicode (lone surrogate)") from None
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        raise BadJson("JSON integer is out of range")


def loads(data: str | bytes) -> Any:
    """Parse untrusted JSON, or raise `BadJson` (never anything else)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = _decoder.decode(text)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise BadJson("not JSON") from None
    if isinstance(value, dict | list | str | int):
        _check(value, 1)
    return value


def load_object(data: str | bytes) -> dict[str, Any]:
    """What every input kefu takes is: one JSON object."""
    value = loads(data)
    if not isinstance(value, dict):
        raise BadJson("not a JSON object")
    return value


def dumps(value: Any) -> str:
    """Compact JSON that any UTF-8 peer can read; `ValueError` for NaN or a lone surrogate."""
    text = _encoder.encode(value)
    text.encode("utf-8")  # raises UnicodeEncodeError (a ValueError) on a lone surrogate
    return text
