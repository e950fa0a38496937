import io

import pytest
from PIL import Image

from editjudge.images import ImageLoadError, load_image


def test_modes_become_rgb(tmp_path):
    for mode in ("RGB", "RGBA", "L", "P", "LA", "CMYK"):
        image = Image.new(mode if mode != "P" else "RGB", (8, 6))
        if mode == "P":
            image = image.convert("P")
        assert load_image(image).mode == "RGB"
        assert load_image(image).size == (8, 6)


def test_transparent_pixels_composite_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(image).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_gray_keeps_its_levels(tmp_path):
    image = Image.new("I;16", (4, 4), 32768)
    path = tmp_path / "gray16.png"
    image.save(path)
    value = load_image(path).getpixel((0, 0))
    assert value[0] == value[1] == value[2] and 120 <= value[0] <= 136


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 10), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (10, 20)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ImageLoadError, match="missing image"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ImageLoadError, match="unreadable image"):
        load_image(bad)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(ImageLoadError, match="unreadable image"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match="expected a path or a PIL image"):
        load_image(42)
