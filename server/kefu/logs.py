"""Logging for every process: one handler on the root logger, one format, tokens scrubbed.

Sanic runs each worker as a separate process, so the configuration is applied in each (the app
factory hands `config(settings)` to Sanic, which applies it) and in the main process. Sanic's own
loggers get no handlers of their own and propagate to the root, so each event prints once.

Every handler carries `ScrubSecrets`: it rewrites the message, the arguments and the traceback text
of each record before any formatter sees it, so a token in a query string (`?token=…`), an
`Authorization: Bearer …` header, a JSON `"token": …` field or a bare session token (the 43
characters `secrets.token_urlsafe(32)` makes) never reaches the log. At DEBUG the WebSocket layer
dumps frames, shortened in the middle, which would leave pieces of a token no pattern can know:
their payload is dropped (it is chat text and login pushes anyway).
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
import traceback
from datetime import datetime
from typing import Any

from kefu.config import Settings

MASK = "***"

#: (pattern, replacement) pairs, applied in order.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # query parameters and form fields that carry credentials: ?token=…&access_token=…&secret=…
    (re.compile(r"(?i)\b((?:access_)?token|secret|js_code|password|api_key)=[^&\s\"'<>]+"), rf"\1={MASK}"),
    # HTTP credentials in header dumps
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*(?:bearer|basic)\s+)[^\s\"',;]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(x-api-key\s*[:=]\s*)[^\s\"',;]+"), rf"\1{MASK}"),
    # JSON or repr fields: "token": "…", 'secret': '…'
    (re.compile(r"(?i)([\"'](?:token|access_token|secret|password|api_key|session_key)[\"']\s*:\s*)"
                r"([\"'])[^\"']*\2"), rf"\1\2{MASK}\2"),
    # user:password@ in connection URLs
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@"), rf"\1{MASK}@"),
    # WebSocket frame dumps (DEBUG): payloads are chat text and login pushes, shortened mid-token
    (re.compile(r"([<>] TEXT )'.*'( \[\d+ bytes\])"), r"\1'…'\2"),
    # a bare session token: exactly the 43 URL-safe characters of secrets.token_urlsafe(32)
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"), MASK),
)


def scrub(text: str) -> str:
    """`text` with every credential the rules know replaced by `***`."""
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


class ScrubSecrets(logging.Filter):
    """Scrubs the rendered message and traceback of every record (attached to every handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class AccessLine(logging.Filter):
    """Sanic passes an access line's fields as `extra` (HTTP: an empty message; WebSocket: OPEN /
    CLOSE); render them into the message so every formatter shows them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if "request" in fields and "status" in fields and not fields.get("kefu_rendered"):
            record.kefu_rendered = True
            what = f"{record.msg} " if record.msg else ""
            took = fields.get("duration") or ""
            line = (f'{what}{fields.get("host", "-")} "{str(fields["request"]).strip()}" '
                    f'{fields["status"]} {fields.get("byte", "-")}{took}')
            record.msg = line.rstrip()
            record.args = None
        return True


def _iso_time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`2026-01-02T03:04:05.678+08:00 INFO [pid] logger: message` (then the traceback, if any)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_time(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time, level, logger, pid, message, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _iso_time(record), "level": record.levelname,
                               "logger": record.name, "pid": record.process,
                               "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False)


_SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.server", "sanic.websockets")


def config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for this process (Sanic's `log_config` takes it as it is)."""
    level = settings.log_level
    loggers: dict[str, Any] = {name: {"level": level, "handlers": [], "propagate": True}
                               for name in _SANIC_LOGGERS}
    loggers["sanic.access"] = {"level": "INFO" if settings.access_log else "WARNING", "handlers": [],
                               "propagate": True, "filters": ["access_line"]}
    for noisy in ("alembic", "asyncio", "httpx", "httpcore", "websockets", "aiosqlite"):
        loggers[noisy] = {"level": "WARNING" if level != "DEBUG" else "DEBUG"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"scrub": {"()": ScrubSecrets}, "access_line": {"()": AccessLine}},
        "formatters": {"kefu": {"()": JsonFormatter if settings.log_format == "json" else TextFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr,
                                "formatter": "kefu", "filters": ["scrub"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": loggers,
    }


def configure(settings: Settings) -> None:
    """Apply `config(settings)` in this process (the command line does this before anything logs)."""
    logging.config.dictConfig(config(settings))
    logging.captureWarnings(True)
