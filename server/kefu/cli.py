"""`kefu serve | migrate | create-agent | set-password | agents | disable-agent | enable-agent |
delete-agent`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from functools import partial
from typing import Any

from pydantic import ValidationError

from kefu.config import Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        msgs = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
        sys.exit(f"kefu: bad configuration: {msgs}")


def serve(args: argparse.Namespace) -> None:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from kefu.app import create_app
    from kefu.ws.transport import KefuWebSocketProtocol

    settings = _settings()
    if args.port is not None:
        settings.port = args.port
    if settings.wechat_mode == "sandbox":
        logging.getLogger("kefu").warning(
            "WeChat SANDBOX login is on: any code logs in (dev only; refused when KEFU_ENV=production)")
    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    single = settings.workers == 1
    app.prepare(host=settings.host, port=settings.port, workers=settings.workers,
                single_process=single, motd=False, access_log=False, protocol=KefuWebSocketProtocol)
    if single:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)


def migrate_cmd(_: argparse.Namespace) -> None:
    from kefu import migrate

    migrate.upgrade(_settings())
    print("schema is up to date")


# ---- agent accounts: create-agent, set-password, agents, disable-agent, enable-agent, delete-agent ----
# Each change goes through AgentAdmin, like the admin HTTP API: the account changes, the agent's
# tokens are revoked, and with Redis its live sockets on every node are closed at once (embedded:
# the running server closes them within KEFU_AGENT_RECHECK_INTERVAL).


async def _with_agent_admin(fn):
    from redis.asyncio import Redis

    from kefu import migrate
    from kefu.agents import AgentAdmin
    from kefu.broker.redis import RedisBroker
    from kefu.core.routing import kick_envelope
    from kefu.protocol import agent_channel
    from kefu.store.accounts import AccountStore
    from kefu.store.engine import make_engine
    from kefu.store.tokens import RedisTokenStore, SqlTokenStore, TokenStore

    settings = _settings()
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


def _admin_run(fn):
    """`fn(admin)`'s result; a refusal (no such agent, name taken, bad password) ends the CLI."""
    from kefu.errors import KefuError

    try:
        return asyncio.run(_with_agent_admin(fn))
    except KefuError as e:
        sys.exit(f"kefu: {e.message}")


def _change_agent(name: str, change: Any) -> None:
    """Run `change(admin, agent_id)` on the agent called `name`."""
    async def run(admin):
        return await change(admin, (await admin.named(name)).id)

    _admin_run(run)


def create_agent(args: argparse.Namespace) -> None:
    pw = _password(args)
    a = _admin_run(lambda admin: admin.create(args.name, pw, admin=args.admin))
    print(f"created agent {a.name} (id {a.id}){' as admin' if a.is_admin else ''}")


def set_password(args: argparse.Namespace) -> None:
    pw = _password(args)
    _change_agent(args.name, lambda admin, agent_id: admin.set_password(agent_id, pw))
    print(f"password of {args.name} changed; its tokens are revoked and its sockets closed")


def list_agents(_: argparse.Namespace) -> None:
    async def all_agents(admin):
        return await admin.accounts.list_agents()

    for a in _admin_run(all_agents):
        flags = ",".join(f for f, on in (("admin", a.is_admin), ("disabled", a.disabled)) if on)
        print(f"{a.id}\t{a.name}" + (f"\t{flags}" if flags else ""))


def disable_agent(args: argparse.Namespace) -> None:
    _change_agent(args.name, lambda admin, agent_id: admin.set_disabled(agent_id, True))
    print(f"agent {args.name} disabled; its tokens are revoked and its sockets closed")


def enable_agent(args: argparse.Namespace) -> None:
    _change_agent(args.name, lambda admin, agent_id: admin.set_disabled(agent_id, False))
    print(f"agent {args.name} enabled")


def delete_agent(args: argparse.Namespace) -> None:
    _change_agent(args.name, lambda admin, agent_id: admin.delete(agent_id))
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

# ---- end of agent accounts ----


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=os.environ.get("KEFU_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(prog="kefu", description="customer-service chat and push server")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the server (settings from KEFU_* env, see docs/configuration.md)")
    s.add_argument("--port", type=int)
    s.set_defaults(fn=serve)
    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(fn=migrate_cmd)
    _add_agent_commands(sub)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
