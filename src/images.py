"""Opening images the same way everywhere: paths or PIL images in, RGB PIL images out.

Policy, the same for sources, edited images and precomputed outputs:
- EXIF orientation is applied (a photo shows the way a viewer shows it);
- transparency is composited on white; palette, CMYK and 16-bit grayscale become 8-bit RGB;
- an animated image gives its first frame;
- a header that claims more than ``MAX_PIXELS`` pixels is refused before any pixel is decoded, so a
  hostile or broken file cannot exhaust memory;
- an empty, truncated or non-image file, or a missing one, raises ImageLoadError naming the file;
  so does a path that is not a regular file (a FIFO, a device such as ``/dev/zero``: never opened),
  a file over ``editjudge.files.MAX_INPUT_FILE_BYTES``, a name too long or a symlink loop.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .files import InputFileError, open_input_file

# 8192 x 8192: above any benchmark photo (GEdit-Bench, ImgEdit and KRIS sources are 1-4 megapixels).
MAX_PIXELS = 8192 * 8192
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (how a viewer shows it), EXIF rotation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping everything to white.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def _check_size(size: tuple[int, int], path: Path) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageLoadError(f"unusable image {path}: header claims {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise ImageLoadError(f"image too large {path}: header claims {width}x{height} = {width * height:,} pixels, "
                             f"over the limit of {MAX_PIXELS:,}; refused before decoding")


def open_image(path: Path) -> Image.Image:
    """Image.open (lazy: the header only) with the size check, any failure as ImageLoadError; the caller closes it."""
    try:
        file = open_input_file(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(f"missing image: {path}") from None
    except InputFileError as exc:
        raise ImageLoadError(f"unusable image: {exc}") from None
    except (OSError, ValueError) as exc:  # a name too long, a symlink loop, no permission, a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ImageLoadError(f"unreadable image {path}: {reason}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
            opened = Image.open(file)
        opened._exclusive_fp = True  # closing the image closes the file we opened, as Image.open(path) does
    except Image.DecompressionBombError as exc:  # Pillow's own limit, beyond ours: same message
        file.close()
        raise ImageLoadError(f"image too large {path}: {exc}; refused before decoding") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        file.close()
        message = str(exc).replace(repr(file), f"{str(path)!r}")  # name the path, not the file object
        raise ImageLoadError(f"unreadable image {path}: {message}") from exc
    try:
        _check_size(opened.size, path)
    except ImageLoadError:
        opened.close()
        raise
    return opened


def _shown_size(image: Image.Image) -> tuple[int, int]:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except (OSError, ValueError, SyntaxError):
        orientation = None
    width, height = image.size
    return (height, width) if orientation in _TRANSPOSED else (width, height)


def image_size(source) -> tuple[int, int]:
    """(width, height) as shown (EXIF orientation applied), read from the header without decoding."""
    if isinstance(source, Image.Image):
        return _shown_size(source)
    with open_image(Path(source)) as opened:
        return _shown_size(opened)


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
    with open_image(path) as opened:
        try:
            opened.load()
            return to_rgb(opened)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImageLoadError(f"unreadable image {path}: {exc}") from exc
