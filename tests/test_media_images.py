"""Pictures without a server: what is stored of an upload (checked by content, capped, stripped of
EXIF, thumbnailed), the signed URLs, and the two blob stores with retention (on a real SQLite
database migrated by Alembic, and a real directory)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from kefu.config import Settings
from kefu.media.images import BadImage, ImageLimits, ImageTooLarge, process_image
from kefu.media.service import Media
from kefu.media.signing import BUCKET, BadSignature, LinkExpired, check, expiry, signature, signed_path
from kefu.media.store import LocalBlobStore, SqlBlobStore
from kefu.migrate import upgrade
from kefu.protocol import Identity
from kefu.store.engine import make_engine
from tests.support import images

LIMITS = ImageLimits(max_bytes=5 * 1024 * 1024, max_pixels=20_000_000, max_side=1024)


def test_a_phone_photo_loses_its_gps_and_gets_a_thumbnail() -> None:
    raw = images.photo_with_gps((1600, 1200))
    assert images.gps_of(raw)[2] == images.GPS_LAT  # the input really carries a position
    out = process_image(raw, LIMITS)
    assert out.mime == "image/jpeg" and (out.width, out.height) == (1024, 768)  # scaled to max_side
    stored = Image.open(io.BytesIO(out.data))
    assert images.gps_of(out.data) == {} and dict(stored.getexif()) == {}
    assert b"KefuPhone" not in out.data and b"KefuPhone" not in out.thumb
    assert (out.thumb_width, out.thumb_height) == (320, 240)
    assert Image.open(io.BytesIO(out.thumb)).size == (320, 240)


def test_the_content_decides_not_the_name() -> None:
    with pytest.raises(BadImage):
        process_image(images.NOT_AN_IMAGE, LIMITS)  # a document "renamed .jpg"
    with pytest.raises(BadImage):
        process_image(b"", LIMITS)
    with pytest.raises(BadImage):  # a JPEG header with the rest cut off
        process_image(images.photo_with_gps()[:600], LIMITS)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    with pytest.raises(BadImage):
        process_image(svg, LIMITS)


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    raw = images.bomb(20_000)  # 400 million pixels in a few dozen KiB
    assert len(raw) < 200_000
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        process_image(raw, LIMITS)
    assert time.monotonic() - started < 1.0  # refused from the header: nothing was decoded
    moderate = io.BytesIO()
    Image.new("L", (5000, 5000)).save(moderate, "PNG")  # 25 M pixels: over this cap, under Pillow's
    with pytest.raises(ImageTooLarge):
        process_image(moderate.getvalue(), LIMITS)
    with pytest.raises(ImageTooLarge):
        process_image(b"\xff\xd8" + b"0" * LIMITS.max_bytes, LIMITS)


def test_animations_transparency_and_formats() -> None:
    gif = process_image(images.animated_gif(4), LIMITS)
    back = Image.open(io.BytesIO(gif.data))
    assert gif.mime == "image/gif" and back.n_frames == 4 and "comment" not in back.info
    webp = process_image(images.transparent_webp(), LIMITS)
    assert webp.mime == "image/png" and webp.thumb_mime == "image/png"  # transparency kept
    assert Image.open(io.BytesIO(webp.data)).mode == "RGBA"
    assert process_image(images.png(), LIMITS).mime == "image/jpeg"  # opaque: a JPEG is smaller


def test_signed_urls() -> None:
    key = b"k" * 32
    iid = "0123456789abcdef0123456789abcdef"
    now = 1_700_000_000
    exp = expiry(now, 600)
    assert exp >= now + 600 and exp % BUCKET == 0 and expiry(now + 5, 600) == exp  # stable for caching
    sig = signature(key, iid, "thumb", exp)
    check(key, iid, "thumb", str(exp), sig, now)
    assert signed_path(key, iid, "thumb", exp) == f"/media/{iid}/thumb?e={exp}&s={sig}"
    with pytest.raises(LinkExpired):
        check(key, iid, "thumb", str(exp), sig, exp + 1)
    for args in ((iid, "full", str(exp), sig), ("f" * 32, "thumb", str(exp), sig),
                 (iid, "thumb", str(exp + 60), sig), (iid, "thumb", str(exp), sig[:-1] + "A"),
                 (iid, "thumb", "-1", sig), (iid, "other", str(exp), sig),
                 ("../etc", "thumb", str(exp), sig)):
        with pytest.raises(BadSignature):
            check(key, *args, now=now)
    with pytest.raises(BadSignature):
        check(b"x" * 32, iid, "thumb", str(exp), sig, now)  # another deployment's secret


@pytest.mark.parametrize("kind", ["local", "database"])
async def test_stores_sign_serve_and_forget(tmp_path: Path, kind: str) -> None:
    settings = Settings(data_dir=tmp_path, media_store=kind, media_retention_days=30, _env_file=None)
    upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        media = Media.from_settings(settings, engine)
        assert isinstance(media.blobs, LocalBlobStore if kind == "local" else SqlBlobStore)
        await media.start()
        alice = Identity(role="user", openid="o_alice")
        rec = await media.ingest(images.photo_with_gps(), "o_alice", alice.sender)
        signed = await media.sign(alice, [rec.id, "f" * 32])
        assert signed["f" * 32] is None and signed[rec.id] is not None
        url = signed[rec.id]["thumb_url"]
        e, s = url.split("?e=")[1].split("&s=")
        mime, data, left = await media.open(rec.id, "thumb", e, s)
        assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (320, 240) and left > 0
        bob = Identity(role="user", openid="o_bob")
        with pytest.raises(Exception, match="own conversation"):
            await media.sign(bob, [rec.id])
        assert await media.sign(Identity(role="agent", agent_id=1), [rec.id])  # agents see all
        # The same secret after a restart (it is kept in kefu_meta): old links stay good.
        again = Media.from_settings(settings, engine)
        await again.start()
        assert again.secret == media.secret
        await again.open(rec.id, "thumb", e, s)
        await again.stop()
        # Retention: a picture older than 30 days goes, bytes and record.
        assert await media.sweep(now=time.time()) == 0
        assert await media.sweep(now=time.time() + 31 * 86400) == 1
        assert await media.index.get(rec.id) is None and await media.blobs.get(rec.id, "full") is None
        assert (await media.sign(alice, [rec.id]))[rec.id] is None
        await media.stop()
    finally:
        await engine.dispose()
