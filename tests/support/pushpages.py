"""Helpers for the push-to-any-page tests: settings with a bind secret, bind tokens (good and bad),
and page sockets on `/ws/push` that bind the three ways a page can."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt

from kefu.push.tokens import mint
from tests.support.qrflow import sandbox_env
from tests.support.server import KefuServer
from tests.support.wsclient import WsClient

BIND_SECRET = "bind-secret-for-tests-0123456789abcdef"  # 38 bytes: HS256 wants at least 32
OTHER_SECRET = "another-backends-secret-0123456789abcdef"


def push_env(seed: bool = False, **extra: str) -> dict[str, str]:
    env = sandbox_env(**{"KEFU_PUSH_BIND_SECRET": BIND_SECRET, **extra})
    if seed:
        env["KEFU_PUSH_SEED_BINDS"] = "true"
    return env


def token(uid: str, groups: tuple[str, ...] = (), ttl: float = 300, secret: str = BIND_SECRET,
          audience: str = "kefu") -> str:
    return mint(uid, secret, audience=audience, ttl=ttl, groups=groups)


def tampered(tok: str, **claims: Any) -> str:
    """The same signature over a payload someone edited (another uid, more groups)."""
    head, payload, sig = tok.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(claims)
    edited = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{head}.{edited}.{sig}"


def unsigned(uid: str) -> str:
    """`alg: none`: a token anyone can write."""
    return jwt.encode({"sub": uid, "aud": "kefu", "exp": int(time.time()) + 60}, key="", algorithm="none")


def push_url(srv: KefuServer) -> str:
    return srv.ws_url + "/push"


async def page(srv: KefuServer, v2: bool = True, **kw: Any) -> WsClient:
    return await WsClient.connect(push_url(srv), v2=v2, ping_interval=None, **kw)


async def signed_page(srv: KefuServer, uid: str, groups: tuple[str, ...] = ()) -> WsClient:
    """A page bound with a good token; the `bound` answer checked."""
    p = await page(srv)
    await p.send({"cmd": "bind", "token": token(uid, groups)})
    bound = await p.recv()
    assert bound["cmd"] == "bound" and bound["uid"] == uid, bound
    return p


async def refused(p: WsClient, frame: dict[str, Any] | str) -> str:
    """Send a bind and return the error code it got."""
    await p.send(frame)
    answer = await p.recv()
    assert answer["cmd"] == "error", answer
    return str(answer["code"])
