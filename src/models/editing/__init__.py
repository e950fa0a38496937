"""Editors: a list of edit requests in, one image (or the exception that item raised) per request out.

Backends (``editing.editors[].type``), imported only when chosen:

* ``diffusers``: any diffusers image-editing pipeline (``diffusers_editor.py``);
* ``precomputed``: outputs made elsewhere, read from ``image_dir`` (``precomputed.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from ...config_types import EditorConfig


@dataclass(frozen=True)
class EditRequest:
    item_id: str
    source: Path
    instruction: str
    seed: int
    category: str = ""


class Editor(Protocol):
    name: str

    def edit(self, requests: list[EditRequest]) -> list[Image.Image | Exception]:
        """One entry per request, in order: the edited image, or the exception that item raised."""
        ...

    def close(self) -> None:
        """Release the model (memory, GPU) before the next editor loads."""
        ...


EDITORS = {
    "diffusers": "editjudge.models.editing.diffusers_editor:DiffusersEditor",
    "precomputed": "editjudge.models.editing.precomputed:PrecomputedEditor",
}



def item_seed(run_seed: int, item_id: str) -> int:
    """The seed for one item: a function of the run seed and the item id only, never of sharding."""
    digest = hashlib.sha256(f"{run_seed}\0{item_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


def get_editor_class(kind: str):
    if kind not in EDITORS:
        raise ValueError(f"unknown editor type {kind!r}; known: {sorted(EDITORS)}")
    module, _, name = EDITORS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def editor_problems(config: EditorConfig, where: str, part: str = "all") -> list[str]:
    """Everything wrong with one editor entry, found without loading a model.

    The backend owns its checks: ``CONFIG_KEYS`` (what an entry of its type may set beside ``name`` and
    ``type``) and ``config_problems(config)``; this adds what holds for every backend. ``part``:
    ``"light"`` the checks that import nothing heavy (the type, the keys, ``batch_size``, and the
    backend's own checks where its ``LIGHT_CHECKS`` says they import nothing), ``"heavy"`` the
    rest (a diffusers pipeline's files and signature), ``"all"`` both.
    """
    if part not in ("light", "heavy", "all"):
        raise ValueError(f"part must be light, heavy or all, got {part!r}")
    if config.type not in EDITORS:
        return [] if part == "heavy" else [f"{where}.type: {config.type!r} is not one of {sorted(EDITORS)}"]
    cls = get_editor_class(config.type)
    problems = []
    if part != "heavy":
        for field in dataclasses.fields(config):  # a key the backend ignores must be left at its default
            if field.name in ("name", "type") or field.name in cls.CONFIG_KEYS:
                continue
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            if getattr(config, field.name) != default:
                problems.append(f"{where}.{field.name}: not used by type {config.type!r} "
                                f"(it takes {', '.join(sorted(cls.CONFIG_KEYS))})")
        if config.batch_size < 1:
            problems.append(f"{where}.batch_size: must be at least 1, got {config.batch_size}")
    light = getattr(cls, "LIGHT_CHECKS", False)
    if part == "all" or (part == "light") == light:
        problems.extend(f"{where}.{p}" for p in cls.config_problems(config))
    return problems


def build_editor(config: EditorConfig, device: str) -> Editor:
    return get_editor_class(config.type).from_config(config, device)
