"""Build this process's engines from the settings: embedded (SQLite + in-process) or Redis + MySQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.broker.local import LocalBroker
from kefu.broker.redis import RedisBroker
from kefu.config import Settings
from kefu.core.session import Limits
from kefu.journal.embedded import EmbeddedJournal
from kefu.journal.redis import RedisJournal
from kefu.node import Node
from kefu.store.accounts import AccountStore, PasswordHashing
from kefu.store.engine import make_engine
from kefu.store.messages import MessageStore
from kefu.store.presence import RedisPresence
from kefu.store.redis_lane import RedisLane
from kefu.store.sqlite_writer import SqliteWriter
from kefu.store.tokens import AgentCheckedTokens, RedisTokenStore, SqlTokenStore


@dataclass
class Engines:
    node: Node
    db: AsyncEngine
    redis: Redis | None
    lane: RedisLane | None = None  # hot single commands, on a connection of their own
    extra: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        await self.db.dispose()
        if self.node.messages.writer is not None:
            await self.node.messages.writer.close()
        if self.lane is not None:
            await self.lane.close()
        if self.redis is not None:
            await self.redis.aclose()


def limits_of(s: Settings) -> Limits:
    return Limits(max_message_bytes=s.max_message_bytes, heartbeat_timeout=s.heartbeat_timeout,
                  rate_per_sec=s.rate_per_sec, rate_burst=s.rate_burst, error_strikes=s.error_strikes,
                  typing_interval=s.typing_interval)


def build(s: Settings) -> Engines:
    db = make_engine(s.database_url)
    messages = MessageStore(db, SqliteWriter(s.sync_database_url) if db.dialect.name == "sqlite" else None)
    accounts = AccountStore(db, PasswordHashing(s.password_hash_concurrency, s.password_hash_queue))
    if s.redis_url:
        # A blocking pool queues a burst for a free connection instead of failing it outright.
        redis = Redis(connection_pool=BlockingConnectionPool.from_url(
            s.redis_url, max_connections=s.redis_pool_size, timeout=10, health_check_interval=10,
            socket_connect_timeout=5))
        node = Node(
            broker=RedisBroker(redis, s.redis_prefix),
            journal=RedisJournal(redis, s.redis_prefix, messages, s.writer_batch, s.writer_retry_max,
                                 s.writer_claim_idle_ms, s.dedupe_ttl),
            messages=messages, accounts=accounts,
            tokens=AgentCheckedTokens(RedisTokenStore(redis, s.redis_prefix), accounts),
            limits=limits_of(s), presence=RedisPresence(redis, s.redis_prefix),
            assign_limit=s.assign_limit, auto_assign=s.auto_assign)
        return Engines(node, db, redis, RedisLane(redis))
    broker = LocalBroker()
    node = Node(
        broker=broker,
        journal=EmbeddedJournal(messages, broker, s.writer_batch, s.writer_retry_max, s.dedupe_ttl),
        messages=messages, accounts=accounts, tokens=AgentCheckedTokens(SqlTokenStore(db), accounts),
        limits=limits_of(s), assign_limit=s.assign_limit, auto_assign=s.auto_assign)
    return Engines(node, db, None)
