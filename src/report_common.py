"""What the Markdown and HTML reports share: the weighting note, number formatting, which records
they list, and where an edited image lies."""

from __future__ import annotations

from pathlib import Path

from .paths import is_inside

WEIGHTS = ("macro = mean of the category means (every category weighs the same, GEdit-Bench's convention); "
           "micro = mean over all scored items.")
WEIGHTING_NOTE = (WEIGHTS + " Failed items (edit or judge failure) are excluded from every "
                  "mean and counted in n_failed and the failure rate.")
WORST_N = 20


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def lowest_scored(records: list[dict], n: int = WORST_N) -> list[dict]:
    """The ``n`` lowest-scored records (failures are listed apart)."""
    scored = [r for r in records if r.get("score") is not None]
    return sorted(scored, key=lambda r: r["score"])[:n]


def failed_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("score") is None]


def edited_path(out: Path, record: dict) -> Path | None:
    """The record's edited image under ``out``, or None (no image, or a path that would leave ``out``)."""
    image = record.get("image")
    if not isinstance(image, str) or not image:
        return None
    path = out / image
    return path if is_inside(out, path) else None
