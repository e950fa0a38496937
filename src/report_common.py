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


# Sub-scores shown beside the overall score (table, report.md, report.html) when the rubric gives them:
# VIEScore's semantic consistency and perceptual quality.
SHOWN_SUB_SCORES = ("SC", "PQ")


def sub_score_macros(by_category: dict[str, dict[str, dict]]) -> dict[str, float | None]:
    """``{category: {name: Stats dict}}`` -> the macro mean (mean of category means) of each shown sub-score."""
    result = {}
    for name in SHOWN_SUB_SCORES:
        means = [subs[name]["mean"] for subs in by_category.values() if name in subs]
        if means:
            scored = [m for m in means if m is not None]
            result[name] = sum(scored) / len(scored) if scored else None
    return result


def shown_sub_scores(summary: dict) -> list[str]:
    """The shown sub-scores any editor of ``summary`` has (``summary_dict``'s ``sub_score_overall``)."""
    present = {k for entry in summary["editors"].values() for k in entry.get("sub_score_overall", {})}
    return [name for name in SHOWN_SUB_SCORES if name in present]
