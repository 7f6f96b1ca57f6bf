"""The `kefu` command: serve, stop, check, push, migrate, and the agent accounts (create-agent,
set-password, agents, disable-agent, enable-agent, delete-agent).

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


# ---- agent accounts: create-agent, set-password, agents, disable-agent, enable-agent, delete-agent ----
# Each change goes through AgentAdmin, like the admin HTTP API: the account changes, the agent's
# tokens are revoked, and with Redis its live sockets on every node are closed at once (embedded:
# the running server closes them within KEFU_AGENT_RECHECK_INTERVAL).


async def _with_agent_admin(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from redis.asyncio import Redis

    from kefu import migrate
    from kefu.agents import AgentAdmin
    from kefu.broker.redis import RedisBroker
    from kefu.core.routing import kick_envelope
    from kefu.protocol import agent_channel
    from kefu.store.accounts import AccountStore
    from kefu.store.engine import make_engine
    from kefu.store.tokens import RedisTokenStore, SqlTokenStore, TokenStore

    if not settings.mysql_url:
        migrate.upgrade(settings)
    engine = make_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    tokens: TokenStore = (RedisTokenStore(redis, settings.redis_prefix) if redis is not None
                          else SqlTokenStore(engine))

    async def kick(agent_id: int) -> None:
        if redis is not None:  # the same kick Node.kick_agent publishes
            await RedisBroker(redis, settings.redis_prefix).publish(
                (agent_channel(agent_id),), kick_envelope("agent"))

    try:
        return await fn(AgentAdmin(AccountStore(engine), tokens, kick))
    finally:
        await engine.dispose()
        if redis is not None:
            await redis.aclose()


def _password(args: argparse.Namespace) -> str:
    pw = args.password or os.environ.get("KEFU_AGENT_PASSWORD")
    if pw is None:
        pw = getpass.getpass("password: ")
    if len(pw) < 8:
        sys.exit("kefu: the password must have at least 8 characters")
    return pw


def _admin_run(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    """`fn(admin)`'s result; a refusal (no such agent, name taken, bad password) ends the CLI."""
    from kefu.errors import KefuError

    settings = _settings(args)
    try:
        return _db(settings, lambda: asyncio.run(_with_agent_admin(settings, fn)))
    except KefuError as e:
        sys.exit(f"kefu: {e.message}")


def _change_agent(args: argparse.Namespace, change: Any) -> None:
    """Run `change(admin, agent_id)` on the agent called `args.name`."""
    async def run(admin: Any) -> Any:
        return await change(admin, (await admin.named(args.name)).id)

    _admin_run(args, run)


def create_agent(args: argparse.Namespace) -> None:
    pw = _password(args)
    a = _admin_run(args, lambda admin: admin.create(args.name, pw, admin=args.admin))
    print(f"created agent {a.name} (id {a.id}){' as admin' if a.is_admin else ''}")


def set_password(args: argparse.Namespace) -> None:
    pw = _password(args)
    _change_agent(args, lambda admin, agent_id: admin.set_password(agent_id, pw))
    print(f"password of {args.name} changed; its tokens are revoked and its sockets closed")


def list_agents(args: argparse.Namespace) -> None:
    async def all_agents(admin: Any) -> Any:
        return await admin.accounts.list_agents()

    for a in _admin_run(args, all_agents):
        flags = ",".join(f for f, on in (("admin", a.is_admin), ("disabled", a.disabled)) if on)
        print(f"{a.id}\t{a.name}" + (f"\t{flags}" if flags else ""))


def disable_agent(args: argparse.Namespace) -> None:
    _change_agent(args, lambda admin, agent_id: admin.set_disabled(agent_id, True))
    print(f"agent {args.name} disabled; its tokens are revoked and its sockets closed")


def enable_agent(args: argparse.Namespace) -> None:
    _change_agent(args, lambda admin, agent_id: admin.set_disabled(agent_id, False))
    print(f"agent {args.name} enabled")


def delete_agent(args: argparse.Namespace) -> None:
    _change_agent(args, lambda admin, agent_id: admin.delete(agent_id))
    print(f"agent {args.name} deleted; its tokens are revoked and its sockets closed")


def _add_agent_commands(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("create-agent", help="add an agent account")
    c.add_argument("name")
    c.add_argument("--password", help="or KEFU_AGENT_PASSWORD, or prompted")
    c.add_argument("--admin", action="store_true", help="may manage agent accounts (/api/admin)")
    c.set_defaults(fn=create_agent)
    c = sub.add_parser("set-password", help="change an agent's password (revokes its tokens)")
    c.add_argument("name")
    c.add_argument("--password", help="or KEFU_AGENT_PASSWORD, or prompted")
    c.set_defaults(fn=set_password)
    sub.add_parser("agents", help="list agent accounts").set_defaults(fn=list_agents)
    for name, fn, helptext in (
            ("disable-agent", disable_agent, "refuse its logins, revoke its tokens, close its sockets"),
            ("enable-agent", enable_agent, "let a disabled agent log in again"),
            ("delete-agent", delete_agent, "delete an agent account (its messages stay)")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("name")
        c.set_defaults(fn=fn)

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
    _add_agent_commands(sub)
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
