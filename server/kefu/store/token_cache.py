"""Users' tokens remembered by the node that issued or resolved them, so a connect (and every
reconnect of a mini-program on a flaky network) costs no token store round trip.

Only users' identities are kept: agents' tokens are few, and each resolve of one checks the
account too (`AgentCheckedTokens`), which must stay fresh. A revocation is carried to every node:
the node revoking forgets the token, revokes it in the store, then announces its digest on the
broker's `tokens` channel, which every node holds (`Node`). A resolve that began before an
announcement arrived does not remember its answer (the `revocations` count moved), so a revoked
token is never remembered after its announcement; one missed while the broker's subscription was
down is covered by forgetting everything at the gap, and an announcement that could not be sent at
all by `MAX_AGE`: nothing is remembered longer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

from kefu.protocol import Identity
from kefu.store.tokens import TokenStore, digest

MAX_AGE = 30.0  # seconds an identity is remembered without asking the store again
MAX_ENTRIES = 50_000


class CachedTokens:
    def __init__(self, inner: TokenStore, announce: Callable[[str], Awaitable[None]],
                 max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE) -> None:
        self.inner = inner
        self._announce = announce
        self._known: dict[str, tuple[Identity, float]] = {}  # digest → (identity, remembered until)
        self._max_entries = max_entries
        self._max_age = max_age
        self._revocations = 0

    def _remember(self, token_digest: str, who: Identity) -> None:
        if who.role != "user" or who.expires_at is None:
            return
        if len(self._known) >= self._max_entries:
            del self._known[next(iter(self._known))]  # the oldest
        self._known[token_digest] = (who, min(float(who.expires_at), time.time() + self._max_age))

    async def issue(self, who: Identity, ttl: int) -> str:
        expires_at = int(time.time()) + ttl  # no later than the store's own expiry
        token = await self.inner.issue(who, ttl)
        self._remember(digest(token), dataclasses.replace(who, expires_at=expires_at))
        return token

    async def resolve(self, token: str) -> Identity | None:
        return await self.resolve_digest(digest(token))

    async def resolve_digest(self, token_digest: str) -> Identity | None:
        known = self._known.get(token_digest)
        if known is not None:
            if known[1] > time.time():
                return known[0]
            del self._known[token_digest]
        revocations = self._revocations
        who = await self.inner.resolve_digest(token_digest)
        if who is not None and revocations == self._revocations:
            self._remember(token_digest, who)
        return who

    async def revoke(self, token: str) -> bool:
        d = digest(token)
        self.forget(d)
        revoked = await self.inner.revoke(token)
        await self._announce(d)
        return revoked

    async def revoke_agent(self, agent_id: int) -> int:
        return await self.inner.revoke_agent(agent_id)

    def forget(self, token_digest: str) -> None:
        """A token was revoked (here, or on another node: its announcement)."""
        self._revocations += 1
        self._known.pop(token_digest, None)

    def forget_all(self) -> None:
        """Announcements may have been missed (the broker's subscription was down)."""
        self._revocations += 1
        self._known.clear()
