"""`kefu serve | migrate | create-agent | set-password | agents`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from functools import partial

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


async def _with_accounts(fn):  # type: ignore[no-untyped-def]
    from kefu import migrate
    from kefu.store.accounts import AccountStore
    from kefu.store.engine import make_engine

    settings = _settings()
    if not settings.mysql_url:
        migrate.upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        return await fn(AccountStore(engine))
    finally:
        await engine.dispose()


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
        agent_id = asyncio.run(_with_accounts(lambda a: a.create_agent(args.name, pw)))
    except AgentExists:
        sys.exit(f"kefu: agent {args.name!r} exists (use set-password)")
    print(f"created agent {args.name} (id {agent_id})")


def set_password(args: argparse.Namespace) -> None:
    pw = _password(args)
    if not asyncio.run(_with_accounts(lambda a: a.set_password(args.name, pw))):
        sys.exit(f"kefu: no agent named {args.name!r}")
    print(f"password of {args.name} changed")


def list_agents(_: argparse.Namespace) -> None:
    for a in asyncio.run(_with_accounts(lambda a: a.list_agents())):
        print(f"{a['id']}\t{a['name']}")


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
    for name, fn, helptext in (("create-agent", create_agent, "add an agent account"),
                               ("set-password", set_password, "change an agent's password")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("name")
        c.add_argument("--password", help="or KEFU_AGENT_PASSWORD, or prompted")
        c.set_defaults(fn=fn)
    sub.add_parser("agents", help="list agent accounts").set_defaults(fn=list_agents)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
