import io

import numpy as np
import pytest
from PIL import Image

from core.images import ImageError, load_image, read_gps


def _jpeg_with_exif(image: Image.Image, exif: Image.Exif) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    image.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_with_exif(image, exif))
    upright = load_image(path)
    assert upright.size == (20, 40)
    top, bottom = np.asarray(upright)[2, 10], np.asarray(upright)[-3, 10]
    assert top[0] > 200 and top[2] < 60  # red on top after the rotation
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "RGB", "YCbCr"])
def test_modes_become_rgb(tmp_path, mode):
    image = Image.new("RGB", (16, 8), (200, 100, 50)).convert(mode)
    path = tmp_path / f"img_{mode}.{'jpg' if mode in ('CMYK', 'YCbCr') else 'png'}"
    image.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (16, 8)


def test_alpha_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black
    image.putpixel((0, 0), (255, 0, 0, 255))
    path = tmp_path / "alpha.png"
    image.save(path)
    pixels = np.asarray(load_image(path))
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[3, 3].tolist() == [255, 255, 255]


def test_16_bit_images_keep_their_contrast(tmp_path):
    ramp = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    path = tmp_path / "depth16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_image(path))[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels)) > 32  # not clipped to a handful of values


def test_pixel_limit_refuses_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 Mpx, a few KB on disk
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_image(path)
    with pytest.raises(ImageError, match="exceeds the limit of 100"):
        load_image(io.BytesIO(_png(20, 20)), max_pixels=100)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_bytes_and_file_objects_are_accepted():
    assert load_image(_png(5, 3)).size == (5, 3)
    assert load_image(io.BytesIO(_png(5, 3))).size == (5, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an image"),
        (b"hello, I am text", "not an image"),
    ],
)
def test_non_images_are_named(tmp_path, content, message):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=rf"photo\.jpg: {message}"):
        load_image(path)


def test_truncated_jpeg_is_named(tmp_path):
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: corrupt or truncated"):
        load_image(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")


def test_gps_is_read_from_exif(tmp_path):
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (37.0, 46.0, 30.36), 3: "W", 4: (122.0, 30.0, 40.68)})
    path = tmp_path / "gps.jpg"
    path.write_bytes(_jpeg_with_exif(Image.new("RGB", (8, 8)), exif))
    lat, lon = read_gps(path)
    assert lat == pytest.approx(37.7751, abs=1e-4)
    assert lon == pytest.approx(-122.5113, abs=1e-4)


def test_no_gps_gives_none():
    assert read_gps(_png(4, 4)) is None
