"""Where picture bytes live: one small interface, two places.

`BlobStore` keeps bytes under a key and a variant (`full`, `thumb`). `LocalBlobStore` writes files
in a directory (the embedded default: one machine); `SqlBlobStore` keeps them in the database's
`image_blobs` table, so with MySQL every node serves every picture without a shared disk. The key
is any id of 1-64 characters of `[0-9A-Za-z_-]`, so other pictures (avatars) could live here too.

What a picture *is* — whose conversation, who sent it, its type and size — is always in the
database (`images`, `ImageIndex`), whatever holds the bytes: that is what a signing request is
checked against, on any node.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.store.binary import binary
from kefu.store.retry import in_transaction
from kefu.store.schema import image_blobs, images

KEY_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")
VARIANT_RE = re.compile(r"[a-z]{1,8}")


def _check(key: str, variant: str) -> None:
    if not KEY_RE.fullmatch(key) or not VARIANT_RE.fullmatch(variant):
        raise ValueError("bad blob key or variant")


class BlobStore(Protocol):
    async def put(self, key: str, blobs: dict[str, bytes]) -> None:
        """Store every variant of `key` (all or, on failure, as good as none: callers put first
        and record the picture after)."""
        ...

    async def get(self, key: str, variant: str) -> bytes | None: ...

    async def delete(self, keys: list[str]) -> None: ...


class LocalBlobStore:
    """Files `<dir>/<key[:2]>/<key>.<variant>`, written to a temporary name and renamed, so a
    reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str, variant: str) -> Path:
        _check(key, variant)
        return self.root / key[:2] / f"{key}.{variant}"

    async def put(self, key: str, blobs: dict[str, bytes]) -> None:
        await asyncio.to_thread(self._put, key, blobs)

    def _put(self, key: str, blobs: dict[str, bytes]) -> None:
        for variant, data in blobs.items():
            path = self._path(key, variant)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    async def get(self, key: str, variant: str) -> bytes | None:
        path = self._path(key, variant)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, keys: list[str]) -> None:
        def run() -> None:
            for key in keys:
                for path in (self.root / key[:2]).glob(f"{key}.*") if KEY_RE.fullmatch(key) else ():
                    path.unlink(missing_ok=True)
        await asyncio.to_thread(run)


class SqlBlobStore:
    """Rows of `image_blobs` (MEDIUMBLOB on MySQL: up to 16 MiB a variant)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put(self, key: str, blobs: dict[str, bytes]) -> None:
        for variant in blobs:
            _check(key, variant)

        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.delete(image_blobs).where(image_blobs.c.image_id == key))
            for variant, data in blobs.items():
                await c.execute(sa.insert(image_blobs).values(
                    image_id=key, variant=variant, data=binary(self.engine.dialect.name, data)))
        await in_transaction(self.engine, run, "storing an image")

    async def get(self, key: str, variant: str) -> bytes | None:
        _check(key, variant)
        async with self.engine.connect() as c:
            data = await c.scalar(sa.select(image_blobs.c.data).where(
                image_blobs.c.image_id == key, image_blobs.c.variant == variant))
        return bytes(data) if data is not None else None

    async def delete(self, keys: list[str]) -> None:
        if not keys:
            return

        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.delete(image_blobs).where(image_blobs.c.image_id.in_(keys)))
        await in_transaction(self.engine, run, "deleting images")


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A stored picture. `openid` is the conversation it belongs to; `uploader` the sender key
    (`u:<openid>`, `a:<agent id>`, or `wechat` for one fetched from WeChat)."""

    id: str
    openid: str
    uploader: str
    source: str
    mime: str
    width: int
    height: int
    bytes: int
    thumb_mime: str
    thumb_width: int
    thumb_height: int
    created_at: int

    def meta(self) -> dict[str, Any]:
        """What a message carries about its picture (`meta.image`): never a URL, which expires."""
        return {"id": self.id, "mime": self.mime, "width": self.width, "height": self.height,
                "bytes": self.bytes, "thumb": {"width": self.thumb_width, "height": self.thumb_height}}


class ImageIndex:
    """The `images` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, rec: ImageRecord) -> None:
        row = {f: getattr(rec, f) for f in ImageRecord.__slots__}

        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.insert(images).values(row))
        await in_transaction(self.engine, run, "recording an image")

    async def get_many(self, ids: list[str]) -> dict[str, ImageRecord]:
        if not ids:
            return {}
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(images).where(images.c.id.in_(ids)))
            return {r.id: ImageRecord(**{f: getattr(r, f) for f in ImageRecord.__slots__}) for r in rows}

    async def get(self, image_id: str) -> ImageRecord | None:
        return (await self.get_many([image_id])).get(image_id)

    async def older_than(self, before_ms: int, limit: int) -> list[str]:
        async with self.engine.connect() as c:
            rows = await c.execute(sa.select(images.c.id).where(images.c.created_at < before_ms)
                                   .order_by(images.c.created_at).limit(limit))
            return [r.id for r in rows]

    async def forget(self, ids: list[str]) -> None:
        async def run(c: AsyncConnection) -> None:
            await c.execute(sa.delete(images).where(images.c.id.in_(ids)))
        await in_transaction(self.engine, run, "forgetting images")


def now_ms() -> int:
    return int(time.time() * 1000)
