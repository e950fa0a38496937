"""What the edit and score stages share: the benchmark's items as a run loads them, the items that
cannot be worked on, error text, chunks, and the crash-test kill points (``EDITJUDGE_KILL_AFTER``)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from .benchmark import BenchmarkItem, load_benchmark
from .config import Config

logger = logging.getLogger(__name__)


def load_items(config: Config, quiet: bool = False) -> list[BenchmarkItem]:
    """The benchmark's items. ``quiet``: without the loaders' warnings (skipped records), which
    ``pipeline.run`` logs when it loads the benchmark first; the workers load it again, quietly."""
    b = config.benchmark
    loader_logger = logging.getLogger("editjudge.benchmark")
    level = loader_logger.level
    if quiet:
        loader_logger.setLevel(logging.ERROR)
    try:
        return load_benchmark(b.path, b.format, b.categories, b.limit, language=b.language,
                              image_cache=Path(b.image_cache) if b.image_cache else None,
                              max_instruction_chars=b.max_instruction_chars)
    finally:
        loader_logger.setLevel(level)


def fault_point(stage: str, batches_written: int) -> None:
    """Crash testing: ``EDITJUDGE_KILL_AFTER=edit:3`` SIGKILLs this process once 3 edit batches are written.

    Points: ``edit`` / ``score`` (before the next batch starts), ``edit-unrecorded`` /
    ``score-unrecorded`` (the batch's work is done but its lines are not written yet).
    """
    spec = os.environ.get("EDITJUDGE_KILL_AFTER")
    if spec and spec == f"{stage}:{batches_written}":
        logger.warning("EDITJUDGE_KILL_AFTER=%s: killing this process", spec)
        os.kill(os.getpid(), signal.SIGKILL)


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class InvalidItem(ValueError):
    """A benchmark item that cannot be edited or scored at all (``BenchmarkItem.problem``)."""


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
