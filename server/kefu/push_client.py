"""`kefu push`: one push from the shell, the way a backend sends it (so no `nc` is needed).

By default it writes one JSON line to the TCP push port and prints the reply (`ok` / `fail`), adding
`KEFU_PUSH_SECRET` when one is set; `--http` posts to `/api/push` with `KEFU_API_KEY` instead. The
exit status says whether a socket received it: 0 delivered, 1 not.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx

from kefu.config import Settings
from kefu.preflight import ConfigError, DependencyDown
from kefu.serving import base_url, connect_host


def build(body: str | None, *, uid: str | None, ticket: str | None, openid: str | None,
          broadcast: bool) -> dict[str, Any]:
    """The push object: the JSON `body` (if any) with the target flags on top."""
    obj: dict[str, Any] = {}
    if body:
        try:
            parsed = json.loads(body)
        except ValueError as e:
            raise ConfigError(f"kefu push: the body is not JSON ({e})") from None
        if not isinstance(parsed, dict):
            raise ConfigError("kefu push: the body must be a JSON object")
        obj.update(parsed)
    for key, value in (("uid", uid), ("ticket", ticket), ("openid", openid)):
        if value is not None:
            obj[key] = value
    if broadcast:
        obj["broadcast"] = True
    if not obj:
        raise ConfigError("kefu push: nothing to push: give a JSON object, or --uid/--openid/--broadcast")
    return obj


def push_tcp(settings: Settings, obj: dict[str, Any], timeout: float) -> bool:
    if not settings.push_port:
        raise ConfigError("kefu push: the push port is off (KEFU_PUSH_PORT=0); use --http")
    if settings.push_secret and "secret" not in obj:
        obj = {**obj, "secret": settings.push_secret}
    host, port = connect_host(settings.push_host), settings.push_port
    line = json.dumps(obj, ensure_ascii=False).encode() + b"\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(line)
            reply = s.makefile("rb").readline().decode(errors="replace").strip()
    except OSError as e:
        raise DependencyDown(f"kefu push: the push port {host}:{port} does not answer "
                             f"({e.strerror or e}); is kefu running?") from None
    print(reply or "(no reply)")
    return reply == "ok"


def push_http(settings: Settings, obj: dict[str, Any], url: str | None, timeout: float) -> bool:
    if not settings.api_key:
        raise ConfigError("kefu push --http: KEFU_API_KEY is not set (the HTTP push API needs it, "
                          "in the server's settings and here)")
    target = (url or base_url(settings)).rstrip("/") + "/api/push"
    try:
        r = httpx.post(target, json=obj, headers={"X-Api-Key": settings.api_key}, timeout=timeout)
    except httpx.HTTPError as e:
        raise DependencyDown(f"kefu push: {target} does not answer ({type(e).__name__}); "
                             "is kefu running?") from None
    print(r.text)
    return r.status_code == 200 and bool(r.json().get("delivered"))
