"""Short-lived signed image URLs: `/media/<id>/<variant>?e=<expiry>&s=<signature>`.

`<img>` in the console and `<image>` in a mini-program cannot send an Authorization header, so the
right to see a picture travels in its URL: kefu signs one for whoever may see the conversation
(`POST /api/media/sign`), and serving checks only the signature and the expiry. The signature is
an HMAC-SHA256 under the deployment's media secret (one per database, so every node signs and
checks alike) over the id, the variant and the expiry; changing any of them breaks it. Expiries
are rounded up to a whole `BUCKET`, so the same picture asked for twice within it gets the same
URL and the browser's cache works. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from kefu.errors import Forbidden

MEDIA_ID_RE = re.compile(r"[0-9a-f]{32}")
VARIANTS = ("full", "thumb")
BUCKET = 60  # seconds


class LinkExpired(Forbidden):
    """The signed URL's time is over: ask for a new one (`POST /api/media/sign`)."""

    code = "link_expired"


class BadSignature(Forbidden):
    code = "bad_signature"


def is_media_id(value: object) -> bool:
    return isinstance(value, str) and MEDIA_ID_RE.fullmatch(value) is not None


def expiry(now: float, ttl: int) -> int:
    """Unix seconds at least `ttl` from `now`, rounded up to a whole bucket (a tenth of `ttl` for
    short ones, so a link never lives much longer than asked)."""
    bucket = max(1, min(BUCKET, ttl // 10))
    at = int(now) + ttl
    return at + (-at % bucket)


def signature(secret: bytes, image_id: str, variant: str, expires: int) -> str:
    mac = hmac.new(secret, f"{image_id}/{variant}/{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


def signed_path(secret: bytes, image_id: str, variant: str, expires: int) -> str:
    return f"/media/{image_id}/{variant}?e={expires}&s={signature(secret, image_id, variant, expires)}"


def check(secret: bytes, image_id: str, variant: str, expires: str | None, sig: str | None,
          now: float) -> None:
    """Raise unless the URL is one kefu signed and its time is not over."""
    if (not is_media_id(image_id) or variant not in VARIANTS or not expires or not sig
            or not expires.isascii() or not expires.isdigit() or len(expires) > 12):
        raise BadSignature("not a signed media URL")
    expected = signature(secret, image_id, variant, int(expires))
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass")):
        raise BadSignature("invalid signature")
    if int(expires) < now:
        raise LinkExpired("this image link has expired; ask for a new one")
