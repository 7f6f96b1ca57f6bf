"""WeChat integration: async API client, dev-only sandbox, callback parsing and safe-mode crypto."""

from kefu.wechat.callback import (
    CallbackEvent,
    build_event_xml,
    build_scan_xml,
    check_signature,
    dedupe_key,
    parse_event,
    sha1_signature,
)
from kefu.wechat.client import (
    DEFAULT_API_BASE,
    DEFAULT_MP_BASE,
    MAX_QR_EXPIRE_SECONDS,
    AccessTokenManager,
    CodeSession,
    QrCode,
    WeChatClient,
    WeChatProvider,
)
from kefu.wechat.crypto import WeChatCrypto
from kefu.wechat.errors import (
    CallbackError,
    InvalidSignatureError,
    WeChatError,
    WeChatUnavailable,
)
from kefu.wechat.sandbox import SANDBOX_DEV_ONLY, SandboxWeChat, make_sandbox, refuse_in_production

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_MP_BASE",
    "MAX_QR_EXPIRE_SECONDS",
    "SANDBOX_DEV_ONLY",
    "AccessTokenManager",
    "CallbackError",
    "CallbackEvent",
    "CodeSession",
    "InvalidSignatureError",
    "QrCode",
    "SandboxWeChat",
    "WeChatClient",
    "WeChatCrypto",
    "WeChatError",
    "WeChatProvider",
    "WeChatUnavailable",
    "build_event_xml",
    "build_scan_xml",
    "check_signature",
    "dedupe_key",
    "make_sandbox",
    "parse_event",
    "refuse_in_production",
    "sha1_signature",
]
