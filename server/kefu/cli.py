"""The `kefu` command: serve, stop, check, push, migrate, create-agent, set-password, agents.

Every command loads the settings the same way (flags over the environment over the `.env` file),
prints to stderr which database and Redis it uses, and fails with one line: exit code 2 for a bad
setting, 1 for a dependency that does not answer (preflight.py).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kefu import logs, preflight
from kefu.config import Settings
from kefu.preflight import DependencyDown, StartupError, say

T = TypeVar("T")


def _settings(args: argparse.Namespace, as_log: bool = False) -> Settings:
    """Load and apply the settings; say which database and Redis this command uses (a log line
    for the server, whose output is its log; a plain stderr line for the other commands)."""
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "workers")}
    settings = preflight.load_settings(**overrides)
    logs.configure(settings)
    if as_log:
        logging.getLogger("kefu").info("%s", preflight.describe(settings))
    else:
        say("kefu: " + preflight.describe(settings))
    return settings


def serve(args: argparse.Namespace) -> None:
    from kefu import serving

    settings = _settings(args, as_log=not args.background)
    if args.background:
        flags = [f"--{k}={v}" for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None]
        serving.serve_background(settings, flags, args.wait)
    else:
        serving.serve(settings)


def stop(args: argparse.Namespace) -> None:
    from kefu import serving

    serving.stop(_settings(args))


def check(args: argparse.Namespace) -> None:
    """Validate, show the effective settings (secrets masked), and try every dependency."""
    settings = _settings(args)
    width = max(len(name) for name, _ in preflight.effective(settings))
    for name, shown in preflight.effective(settings):
        print(f"{name:<{width}}  {shown}")
    failed = False
    for what, probe in (("database", preflight.check_database), ("redis", preflight.check_redis)):
        try:
            verdict = probe(settings)
        except StartupError as e:
            verdict, failed = str(e).removeprefix("kefu: "), True
        print(f"check {what}: {verdict}")
    if failed:
        sys.exit(1)
    print("configuration ok")


def push(args: argparse.Namespace) -> None:
    from kefu import push_client

    settings = _settings(args)
    body = sys.stdin.read() if args.body == "-" else args.body
    obj = push_client.build(body, uid=args.uid, ticket=args.ticket, openid=args.openid,
                            broadcast=args.broadcast)
    if args.http:
        delivered = push_client.push_http(settings, obj, args.url, args.timeout)
    else:
        delivered = push_client.push_tcp(settings, obj, args.timeout)
    sys.exit(0 if delivered else 1)


def migrate_cmd(args: argparse.Namespace) -> None:
    from kefu import migrate

    settings = _settings(args)
    _db(settings, lambda: migrate.upgrade(settings))
    print("schema is up to date")


def _db(settings: Settings, fn: Callable[[], T]) -> T:
    """Run `fn`; a database that does not answer becomes one line naming it."""
    import sqlalchemy.exc

    try:
        return fn()
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError) as e:
        raise DependencyDown(f"kefu: the database {preflight.database_label(settings)} is "
                             f"unreachable: {preflight.reason(e)}") from None


def _with_accounts(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    from kefu import migrate
    from kefu.store.accounts import AccountStore
    from kefu.store.engine import make_engine

    settings = _settings(args)

    async def run() -> T:
        engine = make_engine(settings.database_url)
        try:
            return await fn(AccountStore(engine))
        finally:
            await engine.dispose()

    if not settings.mysql_url:
        _db(settings, lambda: migrate.upgrade(settings))
    return _db(settings, lambda: asyncio.run(run()))


def _password(args: argparse.Namespace) -> str:
    pw = args.password or os.environ.get("KEFU_AGENT_PASSWORD")
    if pw is None:
        pw = getpass.getpass("password: ")
    if len(pw) < 8:
        sys.exit("kefu: the password must have at least 8 characters")
    return pw


def create_agent(args: argparse.Namespace) -> None:
    from kefu.store.accounts import AgentExists

    pw = _password(args)
    try:
        agent_id = _with_accounts(args, lambda a: a.create_agent(args.name, pw))
    except AgentExists:
        sys.exit(f"kefu: agent {args.name!r} exists (use set-password)")
    print(f"created agent {args.name} (id {agent_id})")


def set_password(args: argparse.Namespace) -> None:
    pw = _password(args)
    if not _with_accounts(args, lambda a: a.set_password(args.name, pw)):
        sys.exit(f"kefu: no agent named {args.name!r}")
    print(f"password of {args.name} changed")


def list_agents(args: argparse.Namespace) -> None:
    for a in _with_accounts(args, lambda a: a.list_agents()):
        print(f"{a['id']}\t{a['name']}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kefu", description="customer-service chat and push server. Settings: KEFU_* variables "
        "or a .env file (docs/configuration.md); flags win over both.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--host", help="address to bind (KEFU_HOST)")
    s.add_argument("--port", type=int, help="HTTP/WebSocket port (KEFU_PORT)")
    s.add_argument("--workers", type=int, help="worker processes (KEFU_WORKERS; >1 needs REDIS_URL)")
    s.add_argument("--background", action="store_true",
                   help="run detached (log and pid file in KEFU_DATA_DIR); return once /readyz is 200")
    s.add_argument("--wait", type=float, default=120.0, help="--background: seconds to wait (120)")
    s.set_defaults(fn=serve)

    sub.add_parser("stop", help="stop a server started with serve --background").set_defaults(fn=stop)
    sub.add_parser("check", help="validate the settings, print them (secrets masked), try every "
                   "dependency").set_defaults(fn=check)

    pu = sub.add_parser("push", help="send one push (TCP push port, or --http with KEFU_API_KEY)")
    pu.add_argument("body", nargs="?", help='a JSON object (e.g. \'{"msg":"hi"}\'), or - for stdin')
    pu.add_argument("--uid", help="the QR page's uid (the TCP port also needs --ticket)")
    pu.add_argument("--ticket", help="the ticket the page was bound with")
    pu.add_argument("--openid", help="a user: reaches every chat socket of that openid")
    pu.add_argument("--broadcast", action="store_true", help="every bound QR page")
    pu.add_argument("--http", action="store_true", help="POST /api/push with KEFU_API_KEY instead")
    pu.add_argument("--url", help="--http: kefu's base URL (default: from KEFU_HOST/KEFU_PORT)")
    pu.add_argument("--timeout", type=float, default=5.0, help="seconds (5)")
    pu.set_defaults(fn=push)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(fn=migrate_cmd)
    for name, fn, helptext in (("create-agent", create_agent, "add an agent account"),
                               ("set-password", set_password, "change an agent's password")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("name")
        c.add_argument("--password", help="or KEFU_AGENT_PASSWORD, or prompted")
        c.set_defaults(fn=fn)
    sub.add_parser("agents", help="list agent accounts").set_defaults(fn=list_agents)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except StartupError as e:
        say(str(e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
