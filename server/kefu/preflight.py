"""What every `kefu` command does before its work: load the settings, say which database and Redis
it uses, and (for `serve` and `check`) make sure each dependency answers.

Failures are one line an operator can act on, never a traceback: `ConfigError` (exit code 2) names
the setting, its value and what is allowed; `DependencyDown` names the dependency and its URL with
the password masked; `PortTaken` names the address and how to choose another.
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError

from kefu.config import SettingError, Settings, env_file

MASK = "***"
_SECRET_SUFFIXES = ("secret", "token", "key", "password")


class StartupError(Exception):
    """kefu cannot start; `str(e)` is the one line to print, `exit_code` the status to exit with."""

    exit_code: ClassVar[int] = 1


class ConfigError(StartupError):
    exit_code = 2


class DependencyDown(StartupError):
    pass


class PortTaken(StartupError):
    pass


def env_name(field: str) -> str:
    """The variable that sets `field` (`port` → `KEFU_PORT`, `mysql_url` → `MYSQL_URL`)."""
    if field in ("mysql_url", "redis_url"):
        return field.upper()
    return "KEFU_" + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the arguments (command-line flags), the environment and the `.env` file."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingError as e:
        raise ConfigError(f"kefu: bad setting {e}") from None
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                field = str(err["loc"][0])
                name = env_name(field) if field in Settings.model_fields else field
                value = err.get("input")
                lines.append(f"kefu: bad setting {name}={value!r}: {msg}")
            else:
                lines.append(f"kefu: bad configuration: {msg}")
        raise ConfigError("\n".join(lines)) from None


def mask_url(url: str) -> str:
    """`mysql://kefu:s3cret@db/kefu` → `mysql://kefu:***@db/kefu` (also `?password=`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = [(k, MASK if k.lower() in ("password", "passwd") else v) for k, v in parse_qsl(query)]
        query = urlencode(pairs, safe="*")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def sqlite_path(settings: Settings) -> Path:
    return settings.data_dir / "kefu.sqlite3"


def database_label(settings: Settings) -> str:
    if settings.mysql_url:
        return mask_url(settings.mysql_url)
    return f"sqlite {sqlite_path(settings)}"


def redis_label(settings: Settings) -> str:
    if not settings.redis_url:
        return "none (in-process broker)"
    return f"{mask_url(settings.redis_url)} (prefix {settings.redis_prefix})"


def describe(settings: Settings) -> str:
    """Which database, which Redis, which settings file: every command says it before its work."""
    source = env_file()
    return (f"database {database_label(settings)}; redis {redis_label(settings)}; "
            f"settings: environment{f' + {source}' if source else ''}")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def is_secret(field: str) -> bool:
    return field.endswith(_SECRET_SUFFIXES)


def effective(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as (variable, shown value): secrets as `***`, URLs with the password masked."""
    out = []
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if field in ("mysql_url", "redis_url"):
            shown = mask_url(value) if value else "(unset)"
        elif is_secret(field):
            shown = MASK if value else "(empty)"
        elif value is None:
            shown = "(unset)"
        elif value == "":
            shown = "(empty)"
        else:
            shown = str(value)
        out.append((env_name(field), shown))
    return out


# -- dependency checks: each returns a short "ok …" or raises DependencyDown -----------------------

def check_database(settings: Settings, timeout: float = 5.0) -> str:
    """Connect and run `SELECT 1`; for MySQL also require the current schema (`kefu migrate`)."""
    from sqlalchemy import create_engine, text

    from kefu import migrate

    if not settings.mysql_url:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DependencyDown(f"kefu: the data directory {settings.data_dir} (KEFU_DATA_DIR) "
                                 f"cannot be created: {e.strerror or e}") from None
        where = sqlite_path(settings)
        if not where.exists():
            return "ok (new database; created on first start)"
    url = settings.sync_database_url
    args = {"connect_timeout": max(1, int(timeout))} if settings.mysql_url else {"timeout": timeout}
    engine = create_engine(url, connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = migrate.is_current(settings)
    except Exception as e:
        raise DependencyDown(f"kefu: the database {database_label(settings)} is unreachable: "
                             f"{reason(e)}") from None
    finally:
        engine.dispose()
    if not current:
        if settings.mysql_url:
            raise DependencyDown(f"kefu: the database {database_label(settings)} has an old schema: "
                                 "run `kefu migrate` first")
        return "ok (schema is upgraded on start)"
    return "ok"


def check_redis(settings: Settings, timeout: float = 5.0) -> str:
    if not settings.redis_url:
        return "not configured"
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    try:
        client.ping()
    except Exception as e:
        raise DependencyDown(f"kefu: Redis {mask_url(settings.redis_url)} is unreachable: "
                             f"{reason(e)}") from None
    finally:
        client.close()
    return "ok"


def check_port(host: str, port: int, what: str, hint: str) -> None:
    """Raise PortTaken if `host:port` cannot be bound (the way Sanic binds it: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise port_error(host, port, what, hint, e) from None


def port_error(host: str, port: int, what: str, hint: str, e: OSError) -> PortTaken:
    if e.errno == errno.EADDRINUSE:
        return PortTaken(f"kefu: {what} {host}:{port} is already in use (another kefu, or another "
                         f"program, listens there): stop it, or {hint}")
    if e.errno == errno.EACCES:
        return PortTaken(f"kefu: {what} {host}:{port} needs privileges this user lacks: {hint}")
    return PortTaken(f"kefu: {what} {host}:{port} cannot be bound ({e.strerror or e}): {hint}")


def reason(e: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it in `orig`), on one line."""
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e) or type(e).__name__
    return " ".join(text.split())[:300]
