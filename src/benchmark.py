"""Benchmark items and the loaders for each on-disk layout (``benchmark.format``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read; the message names the file and the record."""


@dataclass(frozen=True)
class BenchmarkItem:
    id: str
    category: str
    instruction: str
    image: Path
    reference_image: Path | None = None
    language: str | None = None


def load_native(path: str | Path) -> list[BenchmarkItem]:
    """``annotations.jsonl`` (or a folder holding one): id, category, instruction, image, optional extras."""
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.jsonl"
    if not path.is_file():
        raise BenchmarkError(f"{path}: no such annotations file")
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
    return items


LOADERS = {"native": load_native}


def load_benchmark(path: str | Path, format: str = "native", categories: list[str] | None = None,
                   limit: int | None = None) -> list[BenchmarkItem]:
    """Load, keep the chosen categories (in file order), then the first ``limit`` items."""
    if format not in LOADERS:
        raise BenchmarkError(f"unknown benchmark format {format!r}; known: {sorted(LOADERS)}")
    items = LOADERS[format](path)
    if categories:
        unknown = sorted(set(categories) - {item.category for item in items})
        if unknown:
            raise BenchmarkError(f"{path}: categories {unknown} not in the benchmark")
        items = [item for item in items if item.category in set(categories)]
    return items[:limit] if limit else items
