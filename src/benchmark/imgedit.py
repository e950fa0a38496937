"""ImgEdit-Bench Basic (PKU-YuanGroup/ImgEdit ``Benchmark/Basic/basic_edit.json``)."""

from __future__ import annotations

from pathlib import Path

from .items import BenchmarkError, BenchmarkItem, Select, _all
from .json_files import _add, _check_str_fields, _find_file, _read_json


def load_imgedit(path: str | Path, image_cache: Path | None = None, select: Select = _all) -> list[BenchmarkItem]:
    """ImgEdit-Bench Basic: ``basic_edit.json`` (the file, or a folder holding it)."""
    source = _find_file(Path(path), "basic_edit.json")
    data = _read_json(source)
    if not isinstance(data, dict):
        raise BenchmarkError(f"{source}: expected a JSON object of key -> record")
    image_root = next((source.parent / sub for sub in ("singleturn", "Benchmark/singleturn")
                       if (source.parent / sub).is_dir()), source.parent)
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for key, record in data.items():
        where = f"{source}: record {key!r}"
        _check_str_fields(record, where, ("id", "prompt", "edit_type"))
        _add(items, seen, BenchmarkItem(id=key, category=record["edit_type"], instruction=record["prompt"],
                                        image=image_root / record["id"], language="en"), where)
    return select(items)
