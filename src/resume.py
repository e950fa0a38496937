"""Resume keys: what must be unchanged for a finished edit or score to be reused.

    key = edit_key(config, editor_config, item, device, file_sha1(item.image))
    # a manifest row is reused only when its "edit_key" equals key (editjudge.edit_stage.edit_shard)

* ``edit_key``: the editor's settings (``editor_settings``: its entry without ``EDITOR_UNHASHED_KEYS``),
  the item's seed, instruction and source image (SHA-1), and what the backend adds through an optional
  ``resume_inputs(config, item_id, category)`` classmethod (precomputed: the output file's SHA-1).
* ``item_key``: the instruction and the source image (SHA-1), which the judge sees beside the edited
  image; a score is reused only under the same scoring settings, edited image and item key.

A key is the first 16 hex digits of the SHA-256 of the inputs as sorted JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

from .benchmark import BenchmarkItem
from .config import Config, EditorConfig
from .files import file_sha1

# Editor entry fields left out of the edit key for every backend: image_dir, whose files are keyed by
# their bytes (the precomputed backend's ``resume_inputs``), so a moved folder is not read again. A
# backend adds the fields that change only how fast (or in how much memory) it edits, never its pixels,
# as ``PIXEL_NEUTRAL_KEYS`` (precomputed: batch_size). The diffusers editor's batch_size is hashed:
# batched kernels give other floats for other batch contents (measured: +-1 on a few pixels). A new
# option that can change pixels needs nothing here.
EDITOR_UNHASHED_KEYS = frozenset({"image_dir"})


def editor_settings(editor: EditorConfig, device: str) -> dict:
    """What of an editor's entry can change its images (the editor part of the edit key).

    The fields its backend takes (``CONFIG_KEYS``) but ``EDITOR_UNHASHED_KEYS`` and its ``PIXEL_NEUTRAL_KEYS``, with ``dtype: auto``
    resolved for ``device`` (auto is float32 on a CPU, so the two make the same edits there). Fields
    left at their default are omitted, so adding an option does not invalidate the edits made before.
    """
    from .models.editing import get_editor_class
    from .torch_utils import resolve_dtype

    backend = get_editor_class(editor.type)
    settings: dict = {"type": editor.type}
    for field in dataclasses.fields(editor):
        unhashed = EDITOR_UNHASHED_KEYS | getattr(backend, "PIXEL_NEUTRAL_KEYS", frozenset())
        if field.name not in backend.CONFIG_KEYS or field.name in unhashed:
            continue
        value = getattr(editor, field.name)
        if field.name == "dtype":
            value = str(resolve_dtype(value, device)).removeprefix("torch.")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if value != default:
            settings[field.name] = value
    return settings


def digest(data) -> str:
    """The first 16 hex digits of the SHA-256 of ``data`` as sorted JSON: every key of a run is one."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def edit_key(config: Config, editor: EditorConfig, item: BenchmarkItem, device: str, source_sha1: str | None) -> str:
    """The hash a manifest row must carry for its edit to be reused: the editor's settings, the item's
    seed, instruction and source image (SHA-1), and what the backend adds (``resume_inputs``: for a
    precomputed editor, the output file's SHA-1)."""
    from .models.editing import get_editor_class, item_seed

    inputs = {"editor": editor_settings(editor, device), "seed": item_seed(config.seed, item.id),
              "instruction": item.instruction, "source_sha1": source_sha1}
    extra = getattr(get_editor_class(editor.type), "resume_inputs", None)
    if extra is not None:
        inputs["backend"] = extra(editor, item.id, item.category)
    return digest(inputs)


def item_key(item: BenchmarkItem, source_sha1: str | None, with_category: bool = False) -> str:
    """What of an item the judge sees besides the edit: its instruction and source image (SHA-1), and its
    category where that picks the prompt (``with_category``: a benchmark protocol's, e.g. ImgEdit's edit
    type; left out otherwise, so that keys made before stay). A score is reused only under the same scoring
    settings, edited image (SHA-1) and item key."""
    key = {"instruction": item.instruction, "source_sha1": source_sha1}
    if with_category:
        key["category"] = item.category
    return digest(key)


def source_hasher():
    """``file_sha1`` remembered per path: many items share a source image."""
    return functools.cache(file_sha1)
