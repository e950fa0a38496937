"""RISEBench (``data/data_total.json``: a list of records, image paths relative to the json's folder)."""

from __future__ import annotations

from pathlib import Path

from .items import BenchmarkError, BenchmarkItem, Select, _all
from .json_files import _add, _check_str_fields, _find_file, _one_image, _read_json, _warn_multi_image


def load_rise(path: str | Path, image_cache: Path | None = None, select: Select = _all) -> list[BenchmarkItem]:
    """RISEBench: ``data_total.json`` (the file, or a folder holding it or ``data/data_total.json``)."""
    source = _find_file(Path(path), "data_total.json", ("data",))
    data = _read_json(source)
    if not isinstance(data, list):
        raise BenchmarkError(f"{source}: expected a JSON list of records")
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    skipped: list[str] = []
    for number, record in enumerate(data):
        if not isinstance(record, dict):
            raise BenchmarkError(f"{source}: record {number}: expected a JSON object, got {type(record).__name__}")
        index = record.get("index")
        where = f"{source}: record {number} (index {index!r})"
        if isinstance(index, bool) or not isinstance(index, (str, int)) or index == "":
            raise BenchmarkError(f"{where}: field 'index' must be a string or an integer")
        _check_str_fields(record, where, ("category", "instruction"))
        image = _one_image(record.get("image"), where, "image")
        if image is None:
            skipped.append(str(index))
            continue
        reference = record.get("reference_img")
        if reference is not None and not isinstance(reference, str):
            raise BenchmarkError(f"{where}: field 'reference_img' must be an image path, got {reference!r}")
        _add(items, seen, BenchmarkItem(
            id=str(index), category=record["category"], instruction=record["instruction"],
            image=source.parent / image, reference_image=source.parent / reference if reference else None,
            language="en"), where)
    _warn_multi_image(skipped, source)
    return select(items)
