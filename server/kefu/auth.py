"""Who a request speaks as: the token from `?token=` (mini-programs cannot set headers) or a
Bearer header, resolved through the node. One place for every HTTP endpoint."""

from __future__ import annotations

import hmac

from sanic import Request

from kefu.context import ctx
from kefu.errors import Forbidden, Unauthorized, Unavailable
from kefu.protocol import Identity


def check_api_key(request: Request, what: str = "this API") -> None:
    """Backends (pushes, profiles) authenticate with `X-Api-Key: <KEFU_API_KEY>`; no key set, no API."""
    expected: str = ctx(request).settings.api_key
    if not expected:
        raise Unavailable(f"{what} disabled: set KEFU_API_KEY")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong X-Api-Key")


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.args.get("token") or None


async def authenticated(request: Request, role: str | None = None,
                        admin: bool = False) -> tuple[str, Identity]:
    """The request's token and identity: 401 without a valid token, 403 if it is not of `role`
    (or not an admin agent, with `admin`). A token store that is down answers 503 at the edge."""
    token = request_token(request)
    if not token:
        raise Unauthorized("token required")
    who = await ctx(request).node.identify(token)
    if who is None:
        raise Unauthorized("invalid token")
    if admin and (who.role != "agent" or not who.admin):
        raise Forbidden("only admin agents may do this")
    if role is not None and who.role != role:
        raise Forbidden(f"only a {role} may do this")
    return token, who


async def identity(request: Request, role: str | None = None, admin: bool = False) -> Identity:
    """`authenticated` for handlers that need only who is asking."""
    return (await authenticated(request, role, admin))[1]
