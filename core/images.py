"""Safe image decoding: EXIF orientation, any mode to RGB, a pixel limit, GPS from EXIF.

Every failure raises ImageError naming the file and the problem, so a run can report a bad
file instead of dying on a bare PIL traceback.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import UserError

# Pillow's own default; larger images are refused before their pixels are decoded.
DEFAULT_MAX_PIXELS = 89_478_485
_GPS_IFD = 0x8825
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

ImageSource = str | os.PathLike | bytes | BinaryIO


class ImageError(UserError, ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def _describe(source: ImageSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return getattr(source, "name", "<uploaded image>")


def _open(source: ImageSource, max_pixels: int) -> Image.Image:
    name = _describe(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # Our own limit applies below; Pillow's global one must not pre-empt it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except FileNotFoundError as error:
        raise ImageError(f"{name}: file not found") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from error
    except Image.DecompressionBombError as error:
        raise ImageError(f"{name}: too many pixels ({error})") from error
    except OSError as error:
        raise ImageError(f"{name}: cannot be read ({error})") from error
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} (a decompression bomb or a huge image; raise max_pixels if intended)"
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit and float images: stretch their actual range to 8 bits, since a plain
        # convert("L") would clip everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels over white, not over whatever colour they happen to store.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGB


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image to upright 8-bit RGB, or raise ImageError saying why not."""
    image = _open(source, max_pixels)
    name = _describe(source)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name}: corrupt or truncated image data ({error})") from error


def _degrees(dms, ref: str) -> float:
    degrees, minutes, seconds = (float(x) for x in dms)
    value = degrees + minutes / 60.0 + seconds / 3600.0
    return -value if ref.strip().upper() in ("S", "W") else value


def read_gps(source: ImageSource) -> tuple[float, float] | None:
    """(lat, lon) in degrees from the EXIF GPS block, or None when the image has none."""
    with _open(source, DEFAULT_MAX_PIXELS) as image:
        gps = image.getexif().get_ifd(_GPS_IFD)
    if not all(key in gps for key in (_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON)):
        return None
    try:
        lat = _degrees(gps[_GPS_LAT], gps[_GPS_LAT_REF])
        lon = _degrees(gps[_GPS_LON], gps[_GPS_LON_REF])
    except (TypeError, ValueError, ZeroDivisionError) as error:
        raise ImageError(f"{_describe(source)}: malformed EXIF GPS block ({error})") from error
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ImageError(f"{_describe(source)}: EXIF GPS out of range ({lat}, {lon})")
    return lat, lon
