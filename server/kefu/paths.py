"""Where the bundled non-Python files live: in the wheel, or in the source checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_REPO = _PKG.parent.parent


def bundled(name: str) -> Path:
    """`migrations` or `web_admin`: the wheel copy (`kefu/_bundled/`) or the checkout's top level."""
    wheel = _PKG / "_bundled" / name
    return wheel if wheel.is_dir() else _REPO / name
