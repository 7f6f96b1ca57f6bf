"""Exceptions shared by the WeChat client, the sandbox and the callback helpers.

Callers need to tell "WeChat said no" (an errcode: do not retry blindly) from "WeChat could not be
reached" (retry later), so the two are separate types.
"""

from __future__ import annotations

# errcodes the code branches on (wechat.md §0, §1, §3, §6).
BUSY = -1
INVALID_CREDENTIAL = 40001
INVALID_APPID = 40013
INVALID_ACCESS_TOKEN = 40014
INVALID_CODE = 40029
ACCESS_TOKEN_EXPIRED = 42001
BAD_DATA_FORMAT = 47001
API_UNAUTHORIZED = 48001

#: A call failing with one of these gets one fresh token and one retry.
TOKEN_ERRCODES = frozenset({INVALID_CREDENTIAL, INVALID_ACCESS_TOKEN, ACCESS_TOKEN_EXPIRED})


class WeChatError(Exception):
    """WeChat answered with a non-zero `errcode` (the HTTP status is 200 even then)."""

    def __init__(self, errcode: int, errmsg: str = "") -> None:
        super().__init__(errcode, errmsg)
        self.errcode = errcode
        self.errmsg = errmsg

    @property
    def busy(self) -> bool:
        """`-1`: the platform is busy; the same call may succeed later."""
        return self.errcode == BUSY

    def __str__(self) -> str:
        return f"WeChat errcode {self.errcode}: {self.errmsg}"


class WeChatUnavailable(Exception):
    """WeChat could not be reached, timed out, or answered something that is not its JSON."""


class CallbackError(ValueError):
    """A callback request from WeChat is malformed (bad XML, missing fields, bad ciphertext)."""


class InvalidSignatureError(CallbackError):
    """A callback's signature or msg_signature does not match: it is not from WeChat."""
