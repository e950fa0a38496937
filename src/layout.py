"""The output folder: where a run's files go (``Layout``), and whether the folder can take them.

    OUT/config.resolved.yaml
    OUT/edits/<editor>/<item>.png       edited images (<item> is ``editjudge.paths.safe_name(item_id)``)
    OUT/edits/manifest.jsonl            one line per editor and item
    OUT/scores.jsonl, OUT/scores.previous.jsonl
    OUT/.parts/<stage>-rank<r>.jsonl    each worker's lines, merged by the parent

``prepare_output`` fails before any model loads when the folder cannot be created or written,
or has under ``MIN_FREE_BYTES`` free; ``output_folder_error`` tells a full or read-only output
folder (the run stops, finished work is kept) from an error of one item.
"""

from __future__ import annotations

import errno
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from .benchmark import BenchmarkItem
from .config import Config, config_to_dict
from .paths import is_inside, safe_name

logger = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """The run cannot go on (nothing to do, unwritable output folder, a worker died)."""


@dataclass(frozen=True)
class Layout:
    out: Path

    @property
    def edits(self) -> Path:
        return self.out / "edits"

    @property
    def manifest(self) -> Path:
        return self.edits / "manifest.jsonl"

    @property
    def scores(self) -> Path:
        return self.out / "scores.jsonl"

    @property
    def previous_scores(self) -> Path:
        return self.out / "scores.previous.jsonl"

    @property
    def parts(self) -> Path:
        return self.out / ".parts"

    def part(self, stage: str, rank: int) -> Path:
        return self.parts / f"{stage}-rank{rank}.jsonl"

    def edited_image(self, editor: str, item_id: str) -> Path:
        return self.edits / editor / f"{safe_name(item_id)}.png"


MIN_FREE_BYTES = 64 * 2**20
# Errors of the output folder itself, not of one item: the run stops with a clear message (finished work is kept).
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def output_folder_error(exc: OSError, out: Path) -> bool:
    """A full disk, a quota or a permission problem in the output folder (not in a model or image read)."""
    if exc.errno not in OUTPUT_ERRNOS:
        return False
    if exc.filename:
        return is_inside(out, Path(exc.filename))
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write on an open file names none


def estimated_edit_bytes(config: Config, items: list[BenchmarkItem], stages: list[str]) -> int:
    """About what stage 1 writes: edited PNGs at the sources' size, raw RGB bytes (a PNG is rarely larger)."""
    if "edit" not in stages or not items:
        return 0
    from .images import ImageLoadError, image_size

    step = max(1, len(items) // 16)
    sizes = []
    for item in items[::step][:16]:
        try:
            width, height = image_size(item.image)
            sizes.append(width * height * 3)
        except ImageLoadError:
            continue
    if not sizes:
        return 0
    return int(sum(sizes) / len(sizes) * len(items) * len(config.editing.editors))


def prepare_output(config: Config, items: list[BenchmarkItem], stages: list[str]) -> None:
    """Fail before any model loads when the output folder cannot take the run's files."""
    out = Path(config.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".parts").mkdir(exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"output folder {out} is not writable: {exc}") from None
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise PipelineError(f"output folder {out} has only {free / 2**20:.1f} MiB free "
                            f"(at least {MIN_FREE_BYTES // 2**20} MiB needed to start)")
    needed = estimated_edit_bytes(config, items, stages)
    if free < needed:
        logger.warning("output folder %s has %.2f GiB free; the edited images may take up to %.2f GiB "
                       "(a full disk stops the run, and a rerun resumes it)", out, free / 2**30, needed / 2**30)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)
    (out / "config.resolved.yaml").write_text(text, encoding="utf-8")
