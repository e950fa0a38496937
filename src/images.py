"""Opening images the same way everywhere: paths or PIL images in, RGB PIL images out."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (how a viewer shows it), EXIF rotation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        # 16-bit grayscale: scale to 8 bits instead of clipping everything to white.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def load_image(source) -> Image.Image:
    """Open ``source`` (a path or a PIL image) as an RGB image, or raise ImageLoadError."""
    if isinstance(source, Image.Image):
        try:
            source.load()
            return to_rgb(source)
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"unreadable image object: {exc}") from exc
    if not isinstance(source, (str, os.PathLike)):
        raise ImageLoadError(f"expected a path or a PIL image, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise ImageLoadError(f"missing image: {path}")
    try:
        with Image.open(path) as opened:
            opened.load()
            return to_rgb(opened)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"unreadable image {path}: {exc}") from exc
