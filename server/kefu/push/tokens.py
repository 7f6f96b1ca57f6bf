"""Signed binds: the short-lived token a backend gives a page so that it may bind to its user id.

A bind token is a JWT (HS256) signed with `KEFU_PUSH_BIND_SECRET`, as Centrifugo's connection
tokens are: `sub` is the uid, `exp` when it stops binding, `aud` must be `KEFU_PUSH_BIND_AUDIENCE`,
and `groups` (optional) the groups the socket joins. PyJWT checks the signature first (an altered
or foreign token is `bad_token` whatever its claims say), then expiry and audience. Only HS256 is
accepted: `alg: none` and algorithm confusion are refused by PyJWT's `algorithms` list. The token
is checked when the socket binds; a bound socket stays bound until it closes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from kefu.core.push import MAX_GROUPS, PushError, norm_group, norm_uid
from kefu.errors import KefuError

ALGORITHM = "HS256"


class TokenBindsOff(KefuError):
    """No KEFU_PUSH_BIND_SECRET: kefu cannot check a bind token."""

    code = "token_binds_off"


class SeedBindsOff(KefuError):
    """A bare-uid or `type: init` bind while KEFU_PUSH_SEED_BINDS is off."""

    code = "seed_binds_off"


class BadToken(KefuError):
    """Not a JWT, not signed with kefu's secret (altered, or another key), not HS256, or a claim
    missing or malformed."""

    code = "bad_token"


class TokenExpired(KefuError):
    code = "token_expired"


class WrongAudience(KefuError):
    code = "wrong_audience"


@dataclass(frozen=True, slots=True)
class BindClaims:
    uid: str
    groups: tuple[str, ...]
    expires_at: float


def verify(token: str, secret: str, audience: str) -> BindClaims:
    """The claims of a genuine, unexpired token for this audience; a `KefuError` otherwise."""
    if not secret:
        raise TokenBindsOff("token binds are off: the server has no KEFU_PUSH_BIND_SECRET")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=audience,
                            options={"require": ["exp", "sub", "aud"]})
    except jwt.ExpiredSignatureError:
        raise TokenExpired("the bind token has expired: get a new one from the backend") from None
    except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as e:
        if isinstance(e, jwt.InvalidAudienceError) or e.claim == "aud":
            raise WrongAudience(f"the bind token is not for audience {audience!r}") from None
        raise BadToken(f"the bind token has no {e.claim!r} claim") from None
    except jwt.PyJWTError:
        raise BadToken("not a bind token signed by this server's backend") from None
    try:
        uid = norm_uid(claims["sub"])
        groups = claims.get("groups", [])
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
            raise PushError(f"groups must be a list of at most {MAX_GROUPS} names")
        names = tuple(dict.fromkeys(norm_group(g) for g in groups))
    except PushError as e:
        raise BadToken(f"bad bind token claims: {e.message}") from None
    return BindClaims(uid, names, float(claims["exp"]))


def mint(uid: str, secret: str, *, audience: str = "kefu", ttl: float = 300,
         groups: Iterable[str] = (), now: float | None = None) -> str:
    """What a backend does (docs/push.md has it in PHP): for tests and the shell."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": uid, "aud": audience, "iat": issued, "exp": issued + int(ttl)}
    groups = list(groups)
    if groups:
        claims["groups"] = groups
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
