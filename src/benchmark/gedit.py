"""GEdit-Bench (stepfun-ai/GEdit-Bench): parquet files or a ``datasets`` ``save_to_disk`` folder, images
embedded as bytes and written once into an image cache."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..files import write_atomic
from ..paths import safe_name
from .items import BenchmarkError, BenchmarkItem, Select, _all
from .json_files import _read_json

logger = logging.getLogger(__name__)


_GEDIT_COLUMNS = ("key", "task_type", "instruction", "instruction_language")
_GEDIT_INTERSECTION = "Intersection_exist"  # optional: the subset GEdit-Bench's statistics also average over
_GEDIT_IMAGE = "input_image"


def _gedit_tables(path: Path) -> tuple[Path, list[Path]]:
    """The folder that holds the data (default cache location) and its parquet or arrow files, in order."""
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise BenchmarkError(f"{path}: no such file or folder")
    if (path / "dataset_dict.json").is_file():
        splits = _read_json(path / "dataset_dict.json").get("splits")
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise BenchmarkError(f"{path / 'dataset_dict.json'}: expected a list of split names under 'splits'")
        return path, [f for split in splits for f in _gedit_tables(path / split)[1]]
    if (path / "state.json").is_file():
        files = _read_json(path / "state.json").get("_data_files")
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("filename"), str)
                                                  for f in files):
            raise BenchmarkError(f"{path / 'state.json'}: expected a list of {{filename}} under '_data_files'")
        return path, [path / Path(f["filename"]).name for f in files]
    parquet = sorted(path.rglob("*.parquet"))
    if not parquet:
        raise BenchmarkError(f"{path}: no parquet files and no save_to_disk folder (state.json or dataset_dict.json)")
    return path, parquet


def _record_batches(file: Path, columns: list[str], optional: tuple[str, ...] = ()) -> Iterator:
    """The file's record batches, only ``columns`` and those of ``optional`` the file has; a missing
    column of ``columns`` is an error naming the file."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BenchmarkError("the gedit format needs pyarrow (pip install pyarrow)") from None
    if not file.is_file():
        raise BenchmarkError(f"{file}: no such data file")

    def check(names: list[str]) -> list[str]:
        missing = [c for c in columns if c not in names]
        if missing:
            raise BenchmarkError(f"{file}: missing column(s) {missing}")
        return [*columns, *(c for c in optional if c in names)]

    try:
        if file.suffix == ".parquet":
            parquet = pq.ParquetFile(file)
            yield from parquet.iter_batches(columns=check(parquet.schema_arrow.names), batch_size=64)
            return
        with pa.memory_map(str(file)) as source:
            try:  # datasets writes arrow IPC streams; accept the IPC file format too
                stream = pa.ipc.open_stream(source)
                wanted = check(stream.schema.names)
                batches = iter(stream)
            except pa.ArrowInvalid:
                source.seek(0)
                table = pa.ipc.open_file(source)
                wanted = check(table.schema.names)
                batches = (table.get_batch(i) for i in range(table.num_record_batches))
            for batch in batches:
                yield batch.select(wanted)
    except (pa.ArrowException, OSError) as exc:
        raise BenchmarkError(f"{file}: cannot read ({exc})") from None


def _image_suffix(data: bytes, path: str | None) -> str:
    for magic, suffix in ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp")):
        if data.startswith(magic):
            return suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    suffix = Path(path).suffix.lower() if path else ""
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".img"


def _default_cache(data_root: Path) -> Path:
    """``.editjudge_images/`` beside the data when writable, else a per-user folder in the temp dir."""
    beside = data_root / ".editjudge_images"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK | os.X_OK):
            return beside
    except OSError:
        pass
    digest = hashlib.sha256(str(data_root.resolve()).encode()).hexdigest()[:12]
    fallback = Path(tempfile.gettempdir()) / f"editjudge-images-{os.getuid()}-{digest}"
    try:
        fallback.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(fallback)
    except OSError as exc:
        raise BenchmarkError(f"{data_root}: cannot create an image cache ({exc}); pass image_cache") from None
    # a predictable name in a shared temp dir: use it only if it is our own real folder
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise BenchmarkError(f"{fallback}: not a folder owned by this user; pass image_cache")
    logger.info("%s is not writable; caching images in %s", beside, fallback)
    return fallback


def _write_once(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` atomically unless it already holds exactly these bytes."""
    try:
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(target, data)
    return True


def load_gedit(path: str | Path, image_cache: Path | None = None, select: Select = _all) -> list[BenchmarkItem]:
    """GEdit-Bench from parquet or a ``save_to_disk`` folder; item id ``f"{key}_{language}"``.

    Each selected item's embedded ``input_image`` is written to ``image_cache`` (default: see
    :func:`_default_cache`) as ````editjudge.paths.safe_name(id)`` + suffix``; a file already holding the same
    bytes is reused. A row whose image has no bytes but a path uses that path (relative to the
    data folder). ``select`` picks the items before any image is written.
    """
    data_root, files = _gedit_tables(Path(path))
    rows: list[tuple[BenchmarkItem, int, int]] = []  # item, file number, row in file
    seen: set[str] = set()
    for file_number, file in enumerate(files):
        row = 0
        for batch in _record_batches(file, list(_GEDIT_COLUMNS), optional=(_GEDIT_INTERSECTION,)):
            for record in batch.to_pylist():
                where = f"{file}: row {row} (key {record.get('key')!r})"
                bad = [c for c in _GEDIT_COLUMNS if not isinstance(record.get(c), str) or not record[c]]
                if bad:
                    raise BenchmarkError(f"{where}: missing, empty or non-string field(s) {bad}")
                intersection = record.get(_GEDIT_INTERSECTION)
                item = BenchmarkItem(id=f"{record['key']}_{record['instruction_language']}",
                                     category=record["task_type"], instruction=record["instruction"],
                                     image=Path(), language=record["instruction_language"],
                                     intersection_exist=intersection if isinstance(intersection, bool) else None)
                if item.id in seen:
                    raise BenchmarkError(f"{where}: duplicate id {item.id!r}")
                seen.add(item.id)
                rows.append((item, file_number, row))
                row += 1
    place = {id(item): (file_number, row) for item, file_number, row in rows}
    selected = select([item for item, _, _ in rows])
    wanted: dict[tuple[int, int], BenchmarkItem] = {place[id(item)]: item for item in selected}
    cache = None
    resolved: dict[str, Path] = {}
    written = reused = 0
    for file_number, file in enumerate(files):
        if not any(f == file_number for f, _ in wanted):
            continue
        row = 0
        for batch in _record_batches(file, [_GEDIT_IMAGE]):
            column = batch.column(0)
            for offset in range(batch.num_rows):
                item = wanted.get((file_number, row + offset))
                if item is None:
                    continue
                value = column[offset].as_py()  # only the rows kept: images are large
                data, image_path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
                if isinstance(data, bytes) and data:
                    if cache is None:
                        cache = Path(image_cache) if image_cache is not None else _default_cache(data_root)
                        try:
                            cache.mkdir(parents=True, exist_ok=True)
                        except OSError as exc:
                            raise BenchmarkError(f"{cache}: cannot create the image cache ({exc})") from None
                    target = cache / (safe_name(item.id) + _image_suffix(data, image_path))
                    if _write_once(target, data):
                        written += 1
                    else:
                        reused += 1
                    resolved[item.id] = target
                elif isinstance(image_path, str) and image_path:
                    resolved[item.id] = data_root / image_path
                else:
                    raise BenchmarkError(f"{file}: row {row + offset} (item {item.id!r}): "
                                         f"no {_GEDIT_IMAGE} (neither bytes nor path)")
            row += batch.num_rows
    if cache is not None:
        logger.info("gedit images in %s: %d written, %d already there", cache, written, reused)
    return [replace(item, image=resolved[item.id]) for item in selected]
