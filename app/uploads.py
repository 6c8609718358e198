"""Uploads on the Retrieve page: the limits on what a request may cost, and each file's answer.

The app is served to anyone who can reach it, so every upload may be hostile. These are the
one definition of its limits; .streamlit/config.toml caps the bytes of a file (maxUploadSize).
A photo is decoded once (core.images, within BOUNDS), and everything that can go wrong with
one file becomes that file's one-line answer: the other files of the batch are still answered.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field

from PIL import Image

from core.errors import UserError, one_line
from core.geo import UTMZone, latlon_to_utm
from core.images import Bounds, ImageError, load_bounded_image, read_gps
from data_catalog.names import MalformedNameError, parse_name

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp"]
# Uploads above this many pixels are refused before decoding (a 48 MP phone photo passes).
UPLOAD_MAX_PIXELS = 60_000_000
# Files answered per request; the rest are not read (the page says so).
MAX_UPLOAD_FILES = 16
# What reaches the network: at most 4:1 (longer to shorter side, centre-cropped: padding would
# show the network mostly padding) and at most 1,024 px long. A run that resizes its database
# (the demo: 96 px shorter side) then sees at most 384 x 96; a native-size run at most
# 1,024 x 256 (or 512 x 512: see QUERY_MAX_SHORTER_SIDE).
MAX_ASPECT_RATIO = 4.0
MAX_QUERY_SIDE = 1024
BOUNDS = Bounds(MAX_ASPECT_RATIO, MAX_QUERY_SIDE)
# Queries whose shorter side exceeds this are resized to it when the database images were
# kept at native size: SF-XL test queries have a 480 px shorter side, its database 512 px.
QUERY_MAX_SHORTER_SIDE = 512

log = logging.getLogger(__name__)


@dataclass
class PreparedUpload:
    """One upload decoded within BOUNDS: what the network sees and what the page shows."""

    name: str
    digest: str  # sha256 of the file's bytes: the cache key of its descriptors
    image: Image.Image  # upright 8-bit RGB within BOUNDS
    preview: bytes  # the same image as JPEG, encoded once
    fitted: str | None  # what was done to it ("65,500 x 45 cropped to ..."), None if nothing
    gps: tuple[float, float] | None  # EXIF (lat, lon)
    gps_problem: str | None = None  # why an EXIF GPS block that is there cannot be used


@dataclass
class UploadPosition:
    position: tuple[float, float] | None  # UTM east, north in the database's zone
    source: str | None  # "EXIF GPS" or "SF-XL file name"
    notes: list[str] = field(default_factory=list)  # why a position given could not be used


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prepare_upload(data: bytes, name: str) -> PreparedUpload:
    """Decode within BOUNDS and read EXIF GPS; ImageError (names the file) if it is no image."""
    buffer = io.BytesIO(data)
    buffer.name = name  # core.images names the file in its messages
    image, fit = load_bounded_image(buffer, BOUNDS, max_pixels=UPLOAD_MAX_PIXELS)
    preview = io.BytesIO()
    image.save(preview, format="JPEG", quality=90)
    gps, problem = None, None
    try:
        gps = read_gps(io.BytesIO(data))
    except ImageError as error:
        problem = _without_name(one_line(error), name)  # "malformed EXIF GPS block (...)"
    return PreparedUpload(
        name, digest(data), image, preview.getvalue(), fit.describe(), gps, problem
    )


def _without_name(message: str, name: str) -> str:
    """core.images starts its messages with the file's name; the answer names it once."""
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def upload_position(prepared: PreparedUpload, zone: UTMZone) -> UploadPosition:
    """Where the photo was taken, in the database's zone: from its SF-XL name, else its EXIF
    GPS. A position that cannot be used (outside UTM, a malformed block) is a note, not an
    error: the photo is still retrieved, without correct/wrong marks."""
    notes = []
    try:
        parsed = parse_name(prepared.name)
    except MalformedNameError:
        parsed = None
    if parsed is not None:
        if parsed.zone_number == zone.number:
            return UploadPosition((parsed.east, parsed.north), "SF-XL file name")
        try:
            east, north, _ = latlon_to_utm(parsed.latitude, parsed.longitude, force_zone=zone)
            return UploadPosition((float(east[0]), float(north[0])), "SF-XL file name")
        except UserError as error:
            notes.append(f"its SF-XL file name cannot place it ({one_line(error)})")
    if prepared.gps_problem:
        notes.append(prepared.gps_problem)
    elif prepared.gps is not None:
        try:
            east, north, _ = latlon_to_utm(*prepared.gps, force_zone=zone)
            return UploadPosition((float(east[0]), float(north[0])), "EXIF GPS", notes)
        except UserError as error:
            notes.append(f"its EXIF GPS position cannot be used ({one_line(error)})")
    return UploadPosition(None, None, notes)


def position_caption(
    position: tuple[float, float] | None, source: str | None, notes: list[str]
) -> str:
    """The line under the photo: where its position came from, or why there is none."""
    if position is not None:
        return f"Position from {source}."
    if notes:
        return (
            f"Position unknown: {'; '.join(notes)}. No correct/wrong marks; fix or remove the "
            "GPS tag (or rename the file) to get them."
        )
    return "Position unknown (no EXIF GPS, not an SF-XL name): no correct/wrong marks."


def first_files(files: list) -> tuple[list, str | None]:
    """The files a request answers (at most MAX_UPLOAD_FILES) and, if some are left, why."""
    if len(files) <= MAX_UPLOAD_FILES:
        return files, None
    rest = len(files) - MAX_UPLOAD_FILES
    return files[:MAX_UPLOAD_FILES], (
        f"{len(files)} photos uploaded: the first {MAX_UPLOAD_FILES} are answered, the other "
        f"{rest} were not read (at most {MAX_UPLOAD_FILES} a request); remove some and upload "
        "the rest in another batch."
    )


def failure_answer(name: str, error: BaseException) -> str:
    """One line for a file that could not be answered, naming the problem and the fix.

    A UserError's message is shown; anything else is a bug, logged with its traceback on the
    server and shown only by its type, never with server paths.
    """
    if isinstance(error, UserError):
        return f"{one_line(error)}; this file is skipped, upload a jpg, png or webp photo instead."
    log.error("upload %r could not be answered", name, exc_info=error)
    return (
        f"{name}: this photo could not be answered (an internal error, "
        f"{type(error).__name__}, is logged on the server); this file is skipped, save it "
        "again as a plain jpg or png and upload it, or try another photo."
    )
