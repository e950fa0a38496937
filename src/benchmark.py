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

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .files import write_atomic
from .paths import safe_name

logger = logging.getLogger(__name__)


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
    problem: str | None = None  # why the item cannot be edited or scored (see the module docstring)
    instruction_truncated_from: int | None = None  # the original length, when the instruction was cut
    intersection_exist: bool | None = None  # GEdit-Bench's Intersection_exist (gedit format only)


MAX_INSTRUCTION_CHARS = 2000


def apply_instruction_policy(items: list[BenchmarkItem], max_chars: int = MAX_INSTRUCTION_CHARS) -> list[BenchmarkItem]:
    """Mark empty instructions invalid and cut long ones (the policy in the module docstring)."""
    out = []
    for item in items:
        if not item.instruction.strip():
            item = replace(item, problem="empty instruction")
        elif len(item.instruction) > max_chars:
            item = replace(item, instruction=item.instruction[:max_chars],
                           instruction_truncated_from=len(item.instruction))
        out.append(item)
    return out


Select = Callable[[list[BenchmarkItem]], list[BenchmarkItem]]


def _all(items: list[BenchmarkItem]) -> list[BenchmarkItem]:
    return items


# ----------------------------------------------------------------------------------------- native

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


# ------------------------------------------------------------------------- json-based public sets

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


# ------------------------------------------------------------------------------------------ gedit

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
