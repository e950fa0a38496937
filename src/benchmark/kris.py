"""KRIS-Bench (``KRIS_Bench/<category>/annotation.json``, images in the category folder)."""

from __future__ import annotations

from pathlib import Path

from .items import BenchmarkError, BenchmarkItem, Select, _all
from .json_files import _add, _check_str_fields, _one_image, _read_json, _warn_multi_image


def _kris_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    root = path / "KRIS_Bench" if not any(path.glob("*/annotation.json")) else path
    files = sorted(root.glob("*/annotation.json"))
    if not files:
        raise BenchmarkError(f"{path}: no <category>/annotation.json files")
    return files


def load_kris(path: str | Path, image_cache: Path | None = None, select: Select = _all) -> list[BenchmarkItem]:
    """KRIS-Bench: the root holding ``<category>/annotation.json`` (or ``KRIS_Bench/`` under it), or one annotation.json."""
    path = Path(path)
    files = _kris_files(path)
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    skipped: list[str] = []
    for source in files:
        category = source.parent.name
        data = _read_json(source)
        if not isinstance(data, dict):
            raise BenchmarkError(f"{source}: expected a JSON object of key -> record")
        for key, record in data.items():
            where = f"{source}: record {key!r}"
            _check_str_fields(record, where, ("ins_en",))
            image = _one_image(record.get("ori_img"), where, "ori_img")
            if image is None:
                skipped.append(f"{category}/{key}")
                continue
            reference = record.get("gt_img")
            if reference is not None and not isinstance(reference, str):
                raise BenchmarkError(f"{where}: field 'gt_img' must be an image path, got {reference!r}")
            _add(items, seen, BenchmarkItem(
                id=f"{category}/{key}", category=category, instruction=record["ins_en"],
                image=source.parent / image,
                reference_image=source.parent / reference if reference else None, language="en"), where)
    _warn_multi_image(skipped, path)
    return select(items)
