"""Hostile uploads on the Retrieve page's plain functions: each file gets its own answer, and
what reaches the network is bounded whatever the file's shape, mode or number."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import torch
from app_fixtures import image_bytes, jpeg_with_numeric_gps_reference
from PIL import Image

from app import uploads
from app.retrieval import decode_query, query_descriptor
from core.geo import UTMZone
from core.images import ImageError, load_image

ZONE = UTMZone(10, "S")
# An SF-XL name of another zone whose latitude (85 N) lies beyond UTM's 84 N.
POLAR_NAME = "@0549697.84@4180105.34@11@X@085.00000@-122.43573@pano@@@@@@201610@x@.jpg"


class InputRecorder(torch.nn.Module):
    """Stands in for a model: records the shape of what reaches it, returns a [1, 4] row."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(images.shape))
        return torch.zeros(images.shape[0], 4)


# --- one unusual file, one answer -----------------------------------------------------------


def test_gps_reference_stored_as_a_number_leaves_the_position_unknown_and_says_why():
    query = decode_query(jpeg_with_numeric_gps_reference(), "phone.jpg", ZONE)
    assert query.position is None
    note = " ".join(query.notes)
    assert "EXIF GPS" in note and "78" in note and "N or S" in note


def test_sfxl_name_beyond_utm_range_leaves_the_position_unknown_and_says_why():
    query = decode_query(image_bytes("JPEG"), POLAR_NAME, ZONE)
    assert query.position is None
    note = " ".join(query.notes)
    assert "SF-XL file name" in note and "85" in note and "UTM" in note


def test_gps_outside_utm_range_is_a_note_too():
    from app_fixtures import jpeg_with_gps

    query = decode_query(jpeg_with_gps(88.0, 10.0), "pole.jpg", ZONE)
    assert query.position is None and "UTM" in " ".join(query.notes)


def test_a_70000_by_8_strip_is_cropped_and_its_preview_encodes():
    prepared = uploads.prepare_upload(image_bytes("PNG", (70_000, 8), 90, mode="L"), "line.png")
    width, height = prepared.image.size
    assert width <= uploads.MAX_ASPECT_RATIO * height
    preview = Image.open(io.BytesIO(prepared.preview))
    assert preview.size == prepared.image.size
    assert "70,000 x 8" in prepared.fitted and "4:1" in prepared.fitted


def test_failure_answer_is_one_line_naming_the_file_and_the_fix():
    corrupt = uploads.failure_answer("x.jpg", ImageError("x.jpg: not an image file"))
    assert "\n" not in corrupt and corrupt.startswith("x.jpg: not an image file")
    assert "jpg, png or webp" in corrupt
    bug = uploads.failure_answer("y.png", KeyError("/srv/secret/path.py"))
    assert "y.png" in bug and "/srv" not in bug and "\n" not in bug


# --- bounded work ---------------------------------------------------------------------------


def test_a_thin_strip_reaches_the_network_at_most_4_to_1():
    """A 65,500 x 45 PNG (about 100 KB) once became a 139,733 x 96 input for a run at 96 px."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (45, 65_500), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    query = decode_query(buffer.getvalue(), "strip.png", ZONE)
    model = InputRecorder()
    query_descriptor(model, query.image, resize=96)
    (_, channels, height, width) = model.shapes[0]
    assert channels == 3 and height == 96 and width <= uploads.MAX_ASPECT_RATIO * 96
    assert "65,500 x 45" in " ".join(query.notes)


def test_a_tall_strip_is_bounded_for_a_run_that_does_not_resize():
    """A 65,500 x 512 strip went in at full size when the run keeps native sizes."""
    query = decode_query(image_bytes("PNG", (65_500, 512), 128, mode="L"), "wide.png", ZONE)
    model = InputRecorder()
    query_descriptor(model, query.image, resize=None)
    (_, _, height, width) = model.shapes[0]
    assert max(height, width) <= uploads.MAX_QUERY_SIDE
    assert width <= uploads.MAX_ASPECT_RATIO * height


def test_an_ordinary_photo_is_left_alone():
    query = decode_query(image_bytes("JPEG", (640, 480)), "photo.jpg", ZONE)
    assert query.image.size == (640, 480) and query.notes == []


def test_16_bit_grey_is_converted_without_float64_copies():
    """The old conversion made several float64 copies (8 bytes a pixel each) of the image."""
    side = 1500
    ramp = np.linspace(0, 60_000, side * side).reshape(side, side).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    data = buffer.getvalue()
    tracemalloc.start()
    try:
        image = load_image(io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < side * side  # under 1 byte a pixel traced by Python (numpy included)
    pixels = np.asarray(image)[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 200


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_modes_keep_their_contrast(mode):
    values = np.linspace(-5, 5, 64 * 32).reshape(32, 64)
    array = values.astype(np.float32) if mode == "F" else (values * 1000).astype(np.int32)
    pixels = np.asarray(load_image(_tiff(array)))[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 200


def _tiff(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "TIFF")
    return buffer.getvalue()


def test_a_batch_is_cut_at_the_file_limit_and_says_how_many_were_not_read():
    files = list(range(uploads.MAX_UPLOAD_FILES + 3))
    kept, notice = uploads.first_files(files)
    assert kept == files[: uploads.MAX_UPLOAD_FILES]
    assert f"{len(files)} photos" in notice and "other 3 were not read" in notice
    assert uploads.first_files(files[:2]) == (files[:2], None)


def test_a_big_sideways_phone_photo_is_decoded_small_and_upright():
    """A JPEG is decoded at a reduced scale (libjpeg draft) yet reported at its stored size."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    query = decode_query(image_bytes("JPEG", (4000, 3000), exif=exif), "phone.jpg", ZONE)
    assert query.image.size == (768, 1024)
    assert query.notes == ["3,000 x 4,000 resized to 768 x 1,024 (at most 1,024 px long)"]
