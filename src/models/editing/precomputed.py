"""The ``precomputed`` editor: outputs an editor already produced elsewhere, read from a folder.

For item ``ID`` (category ``CAT``) it takes the first file that exists among
``image_dir/ID.{png,jpg,jpeg,webp}``, then the same under ``image_dir/CAT/`` (GEdit-style
per-category folders), also trying the id's file-safe form (``editjudge.paths.safe_name``). A missing
file is that item's error. An output whose size differs from its source (as shown, EXIF rotation
applied) is resized to the source size (as GEdit-Bench's scorer does before comparing) unless
``params.resize_to_source`` is false; the original size is kept in ``image.info["resized_from"]``
and lands in the manifest. With resizing on, an unreadable source fails the item, as it does for
any other editor.

Resume: the SHA-1 of the output file found for an item is part of that item's edit key
(``resume_inputs``), so a replaced file is read again on the next run.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from ...files import file_sha1
from ...images import ImageLoadError, image_size, load_image
from . import EditRequest
from ...paths import is_inside, safe_name

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
PARAMS = {"resize_to_source": bool}


def find_output(image_dir: Path, item_id: str, category: str = "") -> Path | None:
    """The first output file for the item among the names in the module docstring, or None."""
    stems = dict.fromkeys([item_id, safe_name(item_id)])
    folders = [image_dir]
    if category:
        folders.append(image_dir / category)
    for folder in folders:
        for stem in stems:
            for ext in EXTENSIONS:
                path = folder / f"{stem}{ext}"
                # A name that cannot exist (a part over 255 bytes, a NUL) is not there: lexists says False.
                if not os.path.lexists(path):
                    continue
                # An id like "../x" must not reach outside image_dir.
                try:
                    target = Path(os.path.realpath(path, strict=True))
                except OSError:
                    # A symlink loop or a dangling link, in the folder: this is the item's output, and
                    # reading it fails with the reason (load_image), never a traceback.
                    if is_inside(image_dir, path.parent):
                        return path
                    continue
                if is_inside(image_dir, target) and not target.is_dir():
                    return path
    return None


class PrecomputedEditor:
    def __init__(self, name: str, image_dir: str | Path, *, resize_to_source: bool = True) -> None:
        self.name = name
        self.image_dir = Path(image_dir)
        self.resize_to_source = resize_to_source
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"precomputed editor {name}: image_dir {self.image_dir} is not a folder")

    # What an editor entry of type precomputed may set beside name and type.
    CONFIG_KEYS = frozenset({"image_dir", "params", "batch_size"})
    # Fields that never change the images it gives (left out of the edit key, editjudge.resume).
    PIXEL_NEUTRAL_KEYS = frozenset({"batch_size"})
    # config_problems imports nothing heavy: the configuration check runs it before torch (editor_problems).
    LIGHT_CHECKS = True

    @classmethod
    def config_problems(cls, config) -> list[str]:
        problems = []
        if not config.image_dir:
            problems.append("image_dir: required for type 'precomputed'")
        elif not Path(config.image_dir).is_dir():
            problems.append(f"image_dir: {config.image_dir} is not a folder")
        for key, value in config.params.items():
            if key not in PARAMS:
                problems.append(f"params.{key}: unknown (accepted: {', '.join(PARAMS)})")
            elif not isinstance(value, PARAMS[key]):
                problems.append(f"params.{key}: expected {PARAMS[key].__name__}, got {value!r}")
        return problems

    @classmethod
    def from_config(cls, config, device: str) -> "PrecomputedEditor":
        return cls(config.name, config.image_dir, **config.params)

    def find(self, request: EditRequest) -> Path | None:
        return find_output(self.image_dir, request.item_id, request.category)

    @classmethod
    def resume_inputs(cls, config, item_id: str, category: str) -> dict:
        """What beyond the editor's settings decides this item's image: the output file's bytes (SHA-1;
        None when there is none), so that replacing a file in ``image_dir`` redoes that item's edit."""
        path = find_output(Path(config.image_dir), item_id, category)
        return {"output_sha1": file_sha1(path) if path is not None else None}

    def _one(self, request: EditRequest) -> Image.Image:
        path = self.find(request)
        if path is None:
            raise FileNotFoundError(f"no output for item {request.item_id!r} in {self.image_dir} "
                                    f"(looked for <id>{{{','.join(EXTENSIONS)}}}, also under <category>/)")
        image = load_image(path)
        if self.resize_to_source:
            try:
                size = image_size(request.source)  # as shown: EXIF rotation applied, header only
            except ImageLoadError as exc:
                # Without its source the output cannot be matched to it, and the item is broken for
                # every editor alike: fail it here as a diffusers editor would.
                raise ImageLoadError(f"source of item {request.item_id!r}: {exc}") from None
            if image.size != size:
                original = image.size
                image = image.resize(size, Image.LANCZOS)
                image.info["resized_from"] = list(original)
        return image

    def edit(self, requests: list[EditRequest]) -> list[Image.Image | Exception]:
        results: list[Image.Image | Exception] = []
        for request in requests:
            try:
                results.append(self._one(request))
            except (OSError, ImageLoadError) as exc:
                results.append(exc)
        return results

    def close(self) -> None:
        pass
