"""Benchmark items and the loaders for each on-disk layout (``benchmark.format``).

Formats (``path`` is the benchmark's root folder or its annotation file; both are accepted):

- ``native``: ``annotations.jsonl``; one JSON object a line: id, category, instruction, image
  (relative to the file), optional reference_image and language.
- ``gedit``: GEdit-Bench (stepfun-ai/GEdit-Bench): parquet files (any depth under the folder, e.g.
  the hub's ``data/train-*.parquet``) or a ``datasets`` ``save_to_disk`` folder (``state.json`` +
  ``*.arrow``, or a ``dataset_dict.json`` with one such folder per split). Columns ``key``,
  ``task_type`` (category), ``instruction``, ``instruction_language`` ("en"/"cn"), ``input_image``
  (the image fed to editors, as GEdit-Bench's own eval does; ``input_image_raw`` is ignored),
  and ``Intersection_exist`` when present (kept for ``--export gedit``).
  Keys repeat across languages, so the item id is ``f"{key}_{language}"``. Images are embedded
  bytes, written once into an image cache (see :func:`load_gedit`).
- ``imgedit``: ImgEdit-Bench Basic (PKU-YuanGroup/ImgEdit ``Benchmark/Basic/basic_edit.json``):
  ``{key: {"id": "<image path>", "prompt", "edit_type"}}``. Image paths are relative to the first
  folder that exists of ``singleturn/`` and ``Benchmark/singleturn/`` beside the json (where the
  hub's ``Benchmark.tar`` puts them), else the json's folder. Item id: the key.
- ``kris``: KRIS-Bench (``KRIS_Bench/<category>/annotation.json``: ``{key: {"ori_img", "ins_en",
  "gt_img"?, ...}}``, images in the category folder). Item id: ``f"{category}/{key}"``.
- ``rise``: RISEBench (``data/data_total.json``: a list of ``{"index", "category",
  "instruction", "image", "reference_img"?, ...}``, image paths relative to the json's folder).
  Item id: the index.

Instructions, whatever the format (the policy a run applies; the records show it):

- an empty or whitespace-only instruction makes the item invalid: it stays in the benchmark, no
  editor or judge sees it, and every editor records it as failed (``failed_stage: "input"``);
- an instruction longer than ``max_instruction_chars`` (default 2000 characters, about 500 tokens:
  far above any public benchmark's longest) is cut to that many characters for editors and judge
  alike, and the item keeps the original length in ``instruction_truncated_from``. Editors' text
  encoders then apply their own limits (CLIP 77 tokens, T5 512), as diffusers always does;
- anything else (unicode, right-to-left text, markup) is passed on unchanged.

KRIS and RISE have records whose input is several images (``ori_img`` / ``image`` a list of more
than one); an item holds one input image, so those records are skipped with a warning that counts
them. Missing image files are not a load error (the pipeline records them per item); a record
without an image field is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .gedit import _gedit_tables, _image_suffix, load_gedit
from .imgedit import load_imgedit
from .items import MAX_INSTRUCTION_CHARS, BenchmarkError, BenchmarkItem, Select, apply_instruction_policy
from .json_files import _find_file
from .kris import _kris_files, load_kris
from .native import _native_file, load_native
from .rise import load_rise

__all__ = [
    "BENCHMARK_FORMATS", "LOADERS", "MAX_INSTRUCTION_CHARS", "BenchmarkError", "BenchmarkItem", "Select",
    "apply_instruction_policy", "benchmark_file_problem", "load_benchmark", "load_gedit", "load_imgedit",
    "load_kris", "load_native", "load_rise", "_image_suffix",
]


LOADERS: dict[str, Callable[..., list[BenchmarkItem]]] = {
    "native": load_native,
    "gedit": load_gedit,
    "imgedit": load_imgedit,
    "kris": load_kris,
    "rise": load_rise,
}
BENCHMARK_FORMATS = tuple(LOADERS)
# The files each format's loader reads, found without reading them (a configuration check, before any import).
_FILE_FINDERS: dict[str, Callable[[Path], object]] = {
    "native": _native_file,
    "gedit": _gedit_tables,
    "imgedit": lambda path: _find_file(path, "basic_edit.json"),
    "kris": _kris_files,
    "rise": lambda path: _find_file(path, "data_total.json", ("data",)),
}


def benchmark_file_problem(path: str | Path, format: str) -> str | None:
    """What is missing for ``format``'s loader at ``path`` (its annotations file, its tables), or None."""
    try:
        _FILE_FINDERS[format](Path(path))
    except BenchmarkError as exc:
        return str(exc)
    return None

_LANGUAGE_ALIASES = {"zh": "cn"}


def _language_key(language: str | None) -> str | None:
    return None if language is None else _LANGUAGE_ALIASES.get(language.lower(), language.lower())


def load_benchmark(path: str | Path, format: str = "native", categories: list[str] | None = None,
                   limit: int | None = None, *, language: str | None = None,
                   image_cache: str | Path | None = None,
                   max_instruction_chars: int = MAX_INSTRUCTION_CHARS) -> list[BenchmarkItem]:
    """Load, keep one language and the chosen categories (in file order), then the first ``limit`` items.

    The instruction policy (module docstring) is applied to the items kept.

    ``language`` is matched case-insensitively with "zh" and "cn" taken as the same language.
    ``image_cache`` is where formats with embedded images (gedit) write them; others ignore it.
    """
    if format not in LOADERS:
        raise BenchmarkError(f"unknown benchmark format {format!r}; known: {sorted(LOADERS)}")

    def select(items: list[BenchmarkItem]) -> list[BenchmarkItem]:
        if language is not None:
            present = sorted({str(item.language) for item in items})
            items = [item for item in items if _language_key(item.language) == _language_key(language)]
            if not items:
                raise BenchmarkError(f"{path}: no items in language {language!r}; languages present: {present}")
        if categories:
            unknown = sorted(set(categories) - {item.category for item in items})
            if unknown:
                raise BenchmarkError(f"{path}: categories {unknown} not in the benchmark")
            items = [item for item in items if item.category in set(categories)]
        return apply_instruction_policy(items[:limit] if limit else items, max_instruction_chars)

    # the loader applies select itself, so that gedit writes only the images of the items kept
    return LOADERS[format](path, image_cache=Path(image_cache) if image_cache else None, select=select)
