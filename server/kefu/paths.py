"""Where kefu's files live: bundled assets, the default data directory, the default `.env` file.

None of these depend on the directory a command runs in, so `kefu serve` and a `kefu create-agent`
typed in another directory use the same database and the same settings.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent
_REPO = _PKG.parent.parent


def bundled(name: str) -> Path:
    """`migrations` or `web_admin`: the wheel copy (`kefu/_bundled/`) or the checkout's top level."""
    wheel = _PKG / "_bundled" / name
    return wheel if wheel.is_dir() else _REPO / name


def checkout() -> Path | None:
    """The source checkout kefu runs from (an editable install, as `scripts/bootstrap` makes), or
    None for an installed wheel."""
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "server" / "kefu").resolve() == _PKG:
        return _REPO
    return None


def default_data_dir() -> Path:
    """`<checkout>/var` from a checkout; else `$XDG_DATA_HOME/kefu` (`~/.local/share/kefu`)."""
    root = checkout()
    if root is not None:
        return root / "var"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "kefu"


def default_env_file() -> Path | None:
    """`<checkout>/.env` from a checkout; an installed kefu reads no file unless KEFU_ENV_FILE names one."""
    root = checkout()
    return root / ".env" if root is not None else None
