"""Who a request speaks as: the token from `?token=` (mini-programs cannot set headers) or a
Bearer header, resolved through the node. One place for every HTTP endpoint."""

from __future__ import annotations

from sanic import Request

from kefu.errors import Forbidden, Unauthorized
from kefu.protocol import Identity


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
    who = await request.app.ctx.node.identify(token)
    if who is None:
        raise Unauthorized("invalid token")
    if admin and (who.role != "agent" or not who.admin):
        raise Forbidden("only admin agents may do this")
    if role is not None and who.role != role:
        raise Forbidden(f"only a {role} may do this")
    return token, who
