"""Safe image decoding: EXIF orientation, any mode to RGB, a pixel limit, GPS from EXIF, and
optional bounds on shape and size (for uploads: what reaches the network stays small).

Every failure raises ImageError naming the file and the problem, so a run can report a bad
file instead of dying on a bare PIL traceback.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import BinaryIO

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


_HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_8_bits(image: Image.Image) -> Image.Image:
    """16/32-bit and float images as 8-bit grey, their actual range stretched to 0..255 (a plain
    convert("L") would clip everything above 255 to white). Pillow scales in C, one integer or
    float32 copy at most: a numpy float64 round trip cost several 8-byte copies per pixel."""
    if image.mode not in _HIGH_BIT_DEPTH:
        return image
    if image.mode != "I;16":
        image = image.convert("I") if image.mode.startswith("I;16") else image
    low, high = image.getextrema()
    if high <= low:
        return Image.new("L", image.size, 0)
    scale = 255.0 / (float(high) - float(low))
    offset = 0.5 - float(low) * scale  # Pillow truncates: + 0.5 rounds to the nearest
    return image.point(lambda value: value * scale + offset).convert("L")


def _to_rgb(image: Image.Image) -> Image.Image:
    image = _to_8_bits(image)
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels over white, not over whatever colour they happen to store.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGB


@dataclass(frozen=True)
class Bounds:
    """At most max_aspect:1 (longer to shorter side, centre-cropped) and max_side pixels long."""

    max_aspect: float
    max_side: int

    def cropped_size(self, size: tuple[int, int]) -> tuple[int, int]:
        width, height = size
        if width > self.max_aspect * height:
            return max(1, math.floor(self.max_aspect * height)), height
        if height > self.max_aspect * width:
            return width, max(1, math.floor(self.max_aspect * width))
        return width, height

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        scale = self.max_side / max(size)
        if scale >= 1:
            return size
        return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


@dataclass(frozen=True)
class Fit:
    """What load_bounded_image did: the upright size decoded, then the crop and the resize."""

    original: tuple[int, int]
    cropped: tuple[int, int] | None
    resized: tuple[int, int] | None
    bounds: Bounds

    def describe(self) -> str | None:
        """One phrase for a caption, e.g. 'cropped from 65,500 x 45 to 180 x 45 (centre, at
        most 4:1)', or None when the image was used as it is."""

        def size(pair: tuple[int, int]) -> str:
            return f"{pair[0]:,} x {pair[1]:,}"

        steps = []
        if self.cropped:
            aspect = f"{self.bounds.max_aspect:g}:1"
            steps.append(f"cropped to {size(self.cropped)} (centre, at most {aspect})")
        if self.resized:
            steps.append(
                f"resized to {size(self.resized)} (at most {self.bounds.max_side:,} px long)"
            )
        return f"{size(self.original)} {', then '.join(steps)}" if steps else None


def _centre_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    left = (image.width - size[0]) // 2
    top = (image.height - size[1]) // 2
    return image.crop((left, top, left + size[0], top + size[1]))


def _decode(
    source: ImageSource, max_pixels: int, bounds: Bounds | None
) -> tuple[Image.Image, Fit | None]:
    image = _open(source, max_pixels)
    name = _describe(source)
    try:
        stored = image.size
        if bounds is not None and image.format == "JPEG":
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale when that still covers the bounded size:
            # a 48 MP phone photo then costs a few MB instead of 144 MB.
            scale = bounds.max_side / max(bounds.cropped_size(stored))
            if scale < 1:
                image.draft(image.mode, tuple(math.ceil(side * scale) for side in stored))
        image.load()
        if image.getexif().get(0x0112) in (5, 6, 7, 8):  # stored sideways
            stored = stored[::-1]
        ImageOps.exif_transpose(image, in_place=True)  # (not in place: a copy even if upright)
        if bounds is None:
            return _to_rgb(image), None
        # Sizes are reckoned on the upright stored size (a JPEG may have been decoded smaller).
        wanted_crop = bounds.cropped_size(stored)
        wanted_size = bounds.resized_size(wanted_crop)
        crop = bounds.cropped_size(image.size)
        if crop != image.size:
            image = _centre_crop(image, crop)
        # Crop and shrink before converting: no copy is made of what is thrown away, and the
        # RGB image (3 bytes a pixel) is made at the final size.
        if image.mode in _HIGH_BIT_DEPTH:
            if image.mode.startswith("I;16") and image.mode != "I;16":
                image = image.convert("I")  # Pillow resizes I;16 but not its byte orders
            if image.size != wanted_size:  # (and reduces no 16-bit image: no reducing_gap)
                image = image.resize(wanted_size, Image.Resampling.BILINEAR)
        image = _to_8_bits(image)
        if image.mode in ("1", "P"):  # resizing palette indices would mix unrelated colours
            image = _to_rgb(image)
        if image.size != wanted_size:
            image = image.resize(wanted_size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        fit = Fit(
            stored,
            wanted_crop if wanted_crop != stored else None,
            wanted_size if wanted_size != wanted_crop else None,
            bounds,
        )
        return _to_rgb(image), fit
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name}: corrupt or truncated image data ({error})") from error


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image to upright 8-bit RGB, or raise ImageError saying why not."""
    return _decode(source, max_pixels, None)[0]


def load_bounded_image(
    source: ImageSource, bounds: Bounds, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, Fit]:
    """Like load_image, centre-cropped to bounds.max_aspect and shrunk to bounds.max_side;
    the Fit says what was done. The network never sees more than the bounds allow."""
    image, fit = _decode(source, max_pixels, bounds)
    assert fit is not None
    return image, fit


def _degrees(dms, ref, axis: str, signs: tuple[str, str]) -> float:
    """Degrees from EXIF (degrees, minutes, seconds) and a reference letter ('S', 'W': minus).

    A reference that is not one of the two letters (a number, as some writers store it) is a
    malformed block, not a guess: 78 might mean 'N' in ASCII, or nothing.
    """
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    letter = ref.strip().upper() if isinstance(ref, str) else None
    if letter not in signs:
        raise ValueError(f"the {axis} reference is {ref!r}, not {signs[0]} or {signs[1]}")
    degrees, minutes, seconds = (float(x) for x in dms)
    value = degrees + minutes / 60.0 + seconds / 3600.0
    return -value if letter == signs[1] else value


def read_gps(source: ImageSource) -> tuple[float, float] | None:
    """(lat, lon) in degrees from the EXIF GPS block, or None when the image has none;
    ImageError names a block that is there but malformed."""
    with _open(source, DEFAULT_MAX_PIXELS) as image:
        gps = image.getexif().get_ifd(_GPS_IFD)
    if not all(key in gps for key in (_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON)):
        return None
    try:
        lat = _degrees(gps[_GPS_LAT], gps[_GPS_LAT_REF], "latitude", ("N", "S"))
        lon = _degrees(gps[_GPS_LON], gps[_GPS_LON_REF], "longitude", ("E", "W"))
    except (TypeError, ValueError, ZeroDivisionError) as error:
        raise ImageError(f"{_describe(source)}: malformed EXIF GPS block ({error})") from error
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ImageError(f"{_describe(source)}: EXIF GPS out of range ({lat}, {lon})")
    return lat, lon
