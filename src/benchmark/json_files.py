"""Reading the json-based public sets (imgedit, kris, rise; gedit's dataset descriptions): strict json,
the record checks and the item list they share."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .items import BenchmarkError, BenchmarkItem

logger = logging.getLogger(__name__)


def _read_json(path: Path):
    """Parse a json file; a key repeated inside one object is an error (json.load keeps the last)."""
    def no_duplicates(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise BenchmarkError(f"{path}: duplicate key {key!r}")
            result[key] = value
        return result

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _find_file(path: Path, name: str, subfolders: tuple[str, ...] = ()) -> Path:
    """``path`` itself when it is a file, else ``path/name`` or ``path/<sub>/name``."""
    if path.is_file():
        return path
    for folder in ("", *subfolders):
        candidate = path / folder / name
        if candidate.is_file():
            return candidate
    where = " or ".join(str(path / folder / name) for folder in ("", *subfolders))
    raise BenchmarkError(f"{path}: no {name} (looked for {where})")


def _one_image(value, where: str, field: str) -> str | None:
    """A record's input image path; None for a multi-image record (the caller skips it)."""
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return value[0] if len(value) == 1 else None
    if isinstance(value, str) and value:
        return value
    raise BenchmarkError(f"{where}: field {field!r} must be an image path or a list of them, got {value!r}")


def _check_str_fields(record, where: str, fields: tuple[str, ...]) -> None:
    if not isinstance(record, dict):
        raise BenchmarkError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in fields if not isinstance(record.get(k), str) or not record[k]]
    if missing:
        raise BenchmarkError(f"{where}: missing, empty or non-string field(s) {missing}")


def _warn_multi_image(skipped: list[str], source: Path) -> None:
    if skipped:
        logger.warning("%s: skipped %d multi-image record(s), which need several input images: %s",
                       source, len(skipped), ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))


def _add(items: list[BenchmarkItem], seen: set[str], item: BenchmarkItem, where: str) -> None:
    if item.id in seen:
        raise BenchmarkError(f"{where}: duplicate id {item.id!r}")
    seen.add(item.id)
    items.append(item)
