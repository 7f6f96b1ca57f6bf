"""Pictures for the tests, made with Pillow: a phone photo with GPS EXIF, a decompression bomb, an
animated GIF, a transparent WebP, and a text file that only claims to be a JPEG."""

from __future__ import annotations

import io

from PIL import ExifTags, Image

GPS_LAT = (39.0, 54.0, 27.0)


def photo_with_gps(size: tuple[int, int] = (640, 480), color: tuple[int, int, int] = (200, 60, 20)) -> bytes:
    """A JPEG carrying a camera model and a GPS position, as a phone writes them."""
    im = Image.new("RGB", size, color)
    for x in range(0, size[0], 40):  # some detail, so it is not all one colour
        im.paste((20, 120, 200), (x, 0, x + 10, size[1]))
    exif = Image.Exif()
    exif[0x0110] = "KefuPhone 12"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[1], gps[2], gps[3], gps[4] = "N", GPS_LAT, "E", (116.0, 23.0, 1.0)
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=90)
    return buf.getvalue()


def png(size: tuple[int, int] = (200, 120), color: tuple[int, int, int, int] = (30, 160, 90, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, color).save(buf, "PNG")
    return buf.getvalue()


def bomb(side: int = 20_000) -> bytes:
    """A PNG of `side` × `side` one-bit pixels: a few dozen KiB that would decode to gigabytes."""
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def animated_gif(frames: int = 4) -> bytes:
    seq = [Image.new("RGB", (40, 30), (i * 60 % 256, 40, 90)) for i in range(frames)]
    buf = io.BytesIO()
    seq[0].save(buf, "GIF", save_all=True, append_images=seq[1:], duration=80, comment=b"shot at home")
    return buf.getvalue()


def transparent_webp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (50, 50), (0, 0, 255, 100)).save(buf, "WEBP")
    return buf.getvalue()


NOT_AN_IMAGE = b"%PDF-1.4 this is a document, not a picture, whatever its name says\n" * 20


def gps_of(data: bytes) -> dict:
    """The GPS IFD of a picture's EXIF ({} when there is none)."""
    return dict(Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo))
