"""Administering agent accounts: each change, and what it must undo.

The admin HTTP API and the CLI both come here, so a password change, a disable or a delete does
the same wherever it was made: the account changes first (from then on logins are refused and
the account's tokens stop resolving, see `AgentCheckedTokens`), then every token of the agent is
revoked, then its live sockets are closed (4401) on every node.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from kefu.errors import BadRequest, Conflict, NotFound
from kefu.store.accounts import AccountStore, AgentAccount, AgentExists
from kefu.store.tokens import TokenStore

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[^\x00-\x20\x7f]{1,64}")  # any printable text without spaces, 1-64 characters
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_AGENT_ID = 2**31 - 1  # agents.id is a 32-bit INT

Kick = Callable[[int], Awaitable[None]]
Requeue = Callable[[int, str], Awaitable[None]]


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BadRequest("name must be 1-64 characters, without spaces or control characters")
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


class AgentAdmin:
    def __init__(self, accounts: AccountStore, tokens: TokenStore, kick: Kick,
                 requeue: Requeue | None = None) -> None:
        self.accounts = accounts
        self.tokens = tokens
        self.kick = kick
        self.requeue = requeue  # a disabled or deleted agent's conversations go back to the queue

    async def get(self, agent_id: int) -> AgentAccount:
        account = await self.accounts.agent(agent_id) if 1 <= agent_id <= MAX_AGENT_ID else None
        if account is None:
            raise NotFound(f"no agent with id {agent_id}")
        return account

    async def named(self, name: str) -> AgentAccount:
        account = await self.accounts.agent_named(name)
        if account is None:
            raise NotFound(f"no agent named {name!r}")
        return account

    async def create(self, name: object, password: object, *, admin: bool = False) -> AgentAccount:
        name, password = check_name(name), check_password(password)
        try:
            agent_id = await self.accounts.create_agent(name, password, admin=admin)
        except AgentExists:
            raise Conflict(f"an agent named {name!r} exists") from None
        log.info("agent %s (id %d) created%s", name, agent_id, " as admin" if admin else "")
        return await self.get(agent_id)

    async def set_password(self, agent_id: int, password: object) -> AgentAccount:
        password = check_password(password)
        await self.get(agent_id)
        await self.accounts.set_password(agent_id, password)
        await self._cut_off(agent_id, "password changed")
        return await self.get(agent_id)

    async def set_disabled(self, agent_id: int, disabled: bool) -> AgentAccount:
        await self.get(agent_id)
        await self.accounts.set_disabled(agent_id, disabled)
        if disabled:
            await self._cut_off(agent_id, "disabled")
            if self.requeue is not None:
                await self.requeue(agent_id, "disabled")
        else:
            log.info("agent id %d enabled", agent_id)
        return await self.get(agent_id)

    async def set_admin(self, agent_id: int, admin: bool) -> AgentAccount:
        await self.get(agent_id)
        await self.accounts.set_admin(agent_id, admin)  # tokens pick it up at once: no revoke
        log.info("agent id %d is %s an admin", agent_id, "now" if admin else "no longer")
        return await self.get(agent_id)

    async def delete(self, agent_id: int) -> None:
        account = await self.get(agent_id)
        await self.accounts.delete_agent(agent_id)
        await self._cut_off(agent_id, f"deleted ({account.name})")
        if self.requeue is not None:
            await self.requeue(agent_id, "deleted")

    async def _cut_off(self, agent_id: int, why: str) -> None:
        revoked = await self.tokens.revoke_agent(agent_id)
        await self.kick(agent_id)
        log.info("agent id %d %s: %d token(s) revoked, sockets closed", agent_id, why, revoked)
