"""What kefu stores of an uploaded picture: checked by content, re-encoded clean, with a thumbnail.

Pure (bytes in, bytes out; no I/O), so tests drive it directly. The checks follow from who sends
images: anyone with a token. So the bytes must decode as one of the four formats a phone and a
browser show (Pillow, told to try only those decoders: a file's name or claimed type means
nothing); the byte size and the pixel count are capped before anything is decoded (a small PNG can
claim 100 000 × 100 000 pixels: a decompression bomb); and what is kept is a fresh encoding of the
pixels alone, so EXIF (GPS position, camera serial), comments and anything appended to the file are
gone. Large pictures are scaled down to `max_side`; the thumbnail is at most `THUMB_SIDE`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from kefu.errors import BadRequest, TooLarge

#: The decoders Pillow may use, and the type each stored picture is served with.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
THUMB_SIDE = 320
MAX_FRAMES = 300
JPEG_QUALITY = 88
THUMB_QUALITY = 80
MAX_STORED = 7 * 1024 * 1024  # what is kept, re-encoded (under half of MySQL's 16 MiB packet)


class BadImage(BadRequest):
    """The upload is not a JPEG, PNG, GIF or WebP picture (whatever its name says), or is broken."""

    code = "bad_image"


class ImageTooLarge(TooLarge):
    """Over the byte or the pixel cap (the latter is checked from the header, before decoding)."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int  # width × height × frames
    max_side: int  # longer side of what is stored; larger pictures are scaled down


@dataclass(frozen=True, slots=True)
class Processed:
    data: bytes
    mime: str
    width: int
    height: int
    thumb: bytes
    thumb_mime: str
    thumb_width: int
    thumb_height: int


def process_image(data: bytes, limits: ImageLimits) -> Processed:
    """Check `data` and return the clean picture and its thumbnail, or raise `BadImage` /
    `ImageTooLarge`. CPU-bound: call it in a worker thread."""
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is over {limits.max_bytes} bytes")
    if not data:
        raise BadImage("the upload is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLarge("the image has too many pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise BadImage("not a JPEG, PNG, GIF or WebP image") from None
        try:
            return _process(im, limits)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLarge("the image has too many pixels") from None
        except (OSError, ValueError, SyntaxError, EOFError):
            raise BadImage("the image is damaged or truncated") from None
        finally:
            im.close()


def _process(im: Image.Image, limits: ImageLimits) -> Processed:
    width, height = im.size
    if width < 1 or height < 1 or width * height > limits.max_pixels:
        raise ImageTooLarge(f"the image has more than {limits.max_pixels} pixels")
    frames = getattr(im, "n_frames", 1) if im.format in ("GIF", "WEBP") else 1
    if frames > MAX_FRAMES or width * height * frames > limits.max_pixels:
        raise ImageTooLarge(f"the animation has more than {limits.max_pixels} pixels in all")
    animated = frames > 1 and max(width, height) <= limits.max_side
    if animated:
        data, mime = _animation(im)
        im.seek(0)
        first = im.convert("RGBA")
        first.info = {}
    else:
        if im.format == "JPEG" and max(width, height) > limits.max_side:
            im.draft("RGB", (limits.max_side, limits.max_side))  # decode at a smaller scale
        im.load()
        upright = ImageOps.exif_transpose(im) or im
        first = _plain(upright)
        if max(first.size) > limits.max_side:
            first.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
        data, mime = _encode(first)
        width, height = first.size
    thumb = first.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    thumb_data, thumb_mime = _encode(thumb, THUMB_QUALITY)
    if len(data) > MAX_STORED:
        raise ImageTooLarge("the image is too large once re-encoded")
    return Processed(data, mime, width, height, thumb_data, thumb_mime, thumb.width, thumb.height)


def _plain(im: Image.Image) -> Image.Image:
    """The pixels only: a copy without `info` (EXIF, ICC, comments, XMP), in a mode JPEG or PNG
    can hold. Palette pictures become RGBA so transparency survives."""
    if im.mode in ("RGB", "L"):
        out = im.copy()
    elif im.mode in ("RGBA", "LA"):
        out = im.convert("RGBA") if im.mode == "LA" else im.copy()
    else:
        has_alpha = "transparency" in im.info or im.mode in ("PA", "RGBa")
        out = im.convert("RGBA" if has_alpha else "RGB")
    out.info = {}
    return out


def _has_alpha(im: Image.Image) -> bool:
    if im.mode != "RGBA":
        return False
    lo = im.getchannel("A").getextrema()[0]
    return isinstance(lo, int | float) and lo < 255


def _encode(im: Image.Image, quality: int = JPEG_QUALITY) -> tuple[bytes, str]:
    """JPEG for opaque pictures, PNG when some pixel is transparent; no metadata either way."""
    buf = io.BytesIO()
    if _has_alpha(im):
        im.save(buf, "PNG")
        return buf.getvalue(), FORMATS["PNG"]
    rgb = im if im.mode in ("RGB", "L") else im.convert("RGB")
    rgb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue(), FORMATS["JPEG"]


def _animation(im: Image.Image) -> tuple[bytes, str]:
    """An animated GIF or WebP, frame by frame, re-encoded as a GIF without comments or EXIF."""
    frames: list[Image.Image] = []
    durations: list[int] = []
    for frame in ImageSequence.Iterator(im):
        durations.append(int(frame.info.get("duration", 100) or 100))
        f = frame.convert("RGBA")
        f.info = {}
        frames.append(f)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=durations,
                   loop=int(im.info.get("loop", 0) or 0), disposal=2)
    return buf.getvalue(), FORMATS["GIF"]
