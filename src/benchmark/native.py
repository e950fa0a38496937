"""The ``native`` format: ``annotations.jsonl``, one JSON object a line (id, category, instruction, image
relative to the file, optional reference_image and language)."""

from __future__ import annotations

import json
from pathlib import Path

from .items import BenchmarkError, BenchmarkItem, Select, _all


def _native_file(path: Path) -> Path:
    if path.is_dir():
        path = path / "annotations.jsonl"
    if not path.is_file():
        raise BenchmarkError(f"{path}: no such annotations file")
    return path


def load_native(path: str | Path, image_cache: Path | None = None, select: Select = _all) -> list[BenchmarkItem]:
    """``annotations.jsonl`` (or a folder holding one): id, category, instruction, image, optional extras."""
    path = _native_file(Path(path))
    items, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise BenchmarkError(f"{where}: expected a JSON object")
            missing = [k for k in ("id", "category", "instruction", "image") if not isinstance(record.get(k), str)]
            if missing:
                raise BenchmarkError(f"{where}: missing or non-string field(s) {missing}")
            if record["id"] in seen:
                raise BenchmarkError(f"{where}: duplicate id {record['id']!r}")
            seen.add(record["id"])
            reference = record.get("reference_image")
            items.append(BenchmarkItem(
                id=record["id"],
                category=record["category"],
                instruction=record["instruction"],
                image=path.parent / record["image"],
                reference_image=path.parent / reference if isinstance(reference, str) else None,
                language=record.get("language"),
            ))
    return select(items)
