"""Pictures, end to end: take an upload in, attach it to a message, sign its URLs, serve it, and
forget it after the retention time.

The secret that signs URLs is `KEFU_MEDIA_SECRET`, or else one made once and kept in the
database's `kefu_meta` (like the epoch), so every node of a deployment signs and checks alike and a
restart does not break the links already handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.config import Settings
from kefu.errors import BadRequest, Forbidden, NotFound
from kefu.media.images import ImageLimits, Processed, process_image
from kefu.media.signing import VARIANTS, check, expiry, is_media_id, signed_path
from kefu.media.store import BlobStore, ImageIndex, ImageRecord, LocalBlobStore, SqlBlobStore, now_ms
from kefu.protocol import Identity
from kefu.store.retry import in_transaction
from kefu.store.upsert import made_once

log = logging.getLogger(__name__)
SECRET_KEY = "media_secret"
SWEEP_EVERY = 3600.0  # seconds between retention sweeps
SWEEP_BATCH = 500
DECODERS = 2  # pictures decoded at once per process (CPU and memory bound)


class MediaGone(NotFound):
    """The picture was deleted (retention) or never existed."""

    code = "not_found"


def blob_store(s: Settings, engine: AsyncEngine) -> BlobStore:
    """`KEFU_MEDIA_STORE`: `database` (the default with MySQL: every node sees every picture) or
    `local` (a directory, the embedded default)."""
    kind = s.media_store if s.media_store != "auto" else ("database" if s.mysql_url else "local")
    if kind == "database":
        return SqlBlobStore(engine)
    return LocalBlobStore(s.media_dir or (s.data_dir / "media"))


class Media:
    def __init__(self, *, engine: AsyncEngine, blobs: BlobStore, limits: ImageLimits, url_ttl: int,
                 retention_days: int, secret: str = "") -> None:
        self.engine = engine
        self.index = ImageIndex(engine)
        self.blobs = blobs
        self.limits = limits
        self.url_ttl = url_ttl
        self.retention_days = retention_days
        self._configured_secret = secret
        self.secret = b""
        self._decoding = asyncio.Semaphore(DECODERS)
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, s: Settings, engine: AsyncEngine) -> Media:
        return cls(engine=engine, blobs=blob_store(s, engine),
                   limits=ImageLimits(s.image_max_bytes, s.image_max_pixels, s.image_max_side),
                   url_ttl=s.media_url_ttl, retention_days=s.media_retention_days, secret=s.media_secret)

    async def start(self) -> None:
        self.secret = await self._load_secret()
        if self.retention_days > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _load_secret(self) -> bytes:
        if self._configured_secret:
            return hashlib.sha256(self._configured_secret.encode()).digest()

        stored = await in_transaction(self.engine, lambda c: made_once(c, SECRET_KEY, secrets.token_hex(32)),
                                      "reading the media secret")
        return bytes.fromhex(stored)

    # ---- in ----------------------------------------------------------------------------------

    async def ingest(self, data: bytes, openid: str, uploader: str, source: str = "upload") -> ImageRecord:
        """Check, clean and store a picture for `openid`'s conversation (BadImage, ImageTooLarge)."""
        async with self._decoding:
            done: Processed = await asyncio.to_thread(process_image, data, self.limits)
        rec = ImageRecord(id=secrets.token_hex(16), openid=openid, uploader=uploader, source=source,
                          mime=done.mime, width=done.width, height=done.height, bytes=len(done.data),
                          thumb_mime=done.thumb_mime, thumb_width=done.thumb_width,
                          thumb_height=done.thumb_height, created_at=now_ms())
        await self.blobs.put(rec.id, {"full": done.data, "thumb": done.thumb})
        await self.index.add(rec)
        return rec

    async def for_message(self, image_id: str, openid: str, who: Identity) -> dict[str, Any]:
        """`meta.image` of a message `who` sends in `openid`'s conversation: the picture must be
        one uploaded to that conversation, by that user (a user) or by an agent (an agent)."""
        rec = await self.index.get(image_id) if is_media_id(image_id) else None
        if rec is None:
            raise BadRequest("no such image: upload it first (POST /api/media)")
        own = rec.uploader == who.sender if who.role == "user" else rec.uploader.startswith("a:")
        if rec.openid != openid or not own:
            raise Forbidden("this image was not uploaded to this conversation by you")
        return rec.meta()

    # ---- out ---------------------------------------------------------------------------------

    def urls(self, rec: ImageRecord, now: float | None = None) -> dict[str, Any]:
        exp = expiry(time.time() if now is None else now, self.url_ttl)
        return {"url": signed_path(self.secret, rec.id, "full", exp),
                "thumb_url": signed_path(self.secret, rec.id, "thumb", exp), "expires_at": exp}

    async def sign(self, who: Identity, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Signed URLs for pictures `who` may see (agents: all; a user: their conversation's);
        None for one that is gone. A user asking for another conversation's picture: Forbidden."""
        wanted = [i for i in dict.fromkeys(ids) if is_media_id(i)]
        found = await self.index.get_many(wanted)
        if who.role == "user" and any(r.openid != who.openid for r in found.values()):
            raise Forbidden("a user can only see the pictures of their own conversation")
        return {i: (self.urls(found[i]) if i in found else None) for i in wanted}

    async def open(self, image_id: str, variant: str, expires: str | None, sig: str | None
                   ) -> tuple[str, bytes, int]:
        """The bytes behind a signed URL: (type, data, seconds the link has left)."""
        now = time.time()
        check(self.secret, image_id, variant, expires, sig, now)
        rec = await self.index.get(image_id)
        data = await self.blobs.get(image_id, variant) if rec is not None else None
        if rec is None or data is None:
            raise MediaGone("this image is no longer stored")
        return (rec.mime if variant == "full" else rec.thumb_mime), data, int(expires or 0) - int(now)

    async def read(self, rec: ImageRecord, variant: str = "full") -> bytes | None:
        assert variant in VARIANTS
        return await self.blobs.get(rec.id, variant)

    # ---- retention ---------------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> int:
        """Delete pictures older than KEFU_MEDIA_RETENTION_DAYS; how many went. Messages keep
        their `meta.image`; signing answers null for them and clients show the placeholder."""
        if self.retention_days <= 0:
            return 0
        cutoff = int(((time.time() if now is None else now) - self.retention_days * 86400) * 1000)
        gone = 0
        while True:
            ids = await self.index.older_than(cutoff, SWEEP_BATCH)
            if not ids:
                return gone
            await self.index.forget(ids)  # first: a picture is never listed without its bytes
            await self.blobs.delete(ids)
            gone += len(ids)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                n = await self.sweep()
                if n:
                    log.info("media retention: %d picture(s) deleted", n)
            except Exception as e:
                log.warning("media retention sweep failed: %s", e)
            await asyncio.sleep(SWEEP_EVERY)

