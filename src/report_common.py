"""What the Markdown and HTML reports share: the weighting note, number formatting, which records
they list, and where an edited image lies."""

from __future__ import annotations

import re
from pathlib import Path

from .aggregate import FAILURE_RATE_FLAG
from .paths import is_inside

WEIGHTS = ("macro = mean of the category means (every category weighs the same, GEdit-Bench's convention); "
           "micro = mean over all scored items.")
# Beside the legend of the kinds of mean (mean_descriptions), which it does not repeat.
FAILURES_NOTE = ("Failed items (edit or judge failure) are counted in n_failed and the failure rate; an editor "
                 f"whose failure rate exceeds {FAILURE_RATE_FLAG:.0%} is flagged.")
# The kinds of mean every report shows, with the label it shows them under (summary.json: overall[key]).
MEAN_LABELS = {"macro": "overall (macro)", "macro_failed_as_min": "macro, failed = min",
               "macro_common": "macro, common items", "micro": "overall (micro)"}
FLAG = f"flagged: over {FAILURE_RATE_FLAG:.0%} failed"


def mean_descriptions(floor: float, n_common: int) -> dict[str, str]:
    """What each kind of mean is (summary.json's ``means``; the reports' legend)."""
    return {
        "macro": "the headline, GEdit-Bench's convention: the mean of the category means over scored items, so "
                 "every category weighs the same; failed items, and categories with nothing scored, are left out",
        "macro_failed_as_min": f"the same mean with every failed item counted as the scale's minimum ({floor:g}), "
                               "so every item and category counts",
        "macro_common": f"the same mean over only the {n_common} items that every editor scored: the same items "
                        "for every editor",
        "micro": "the mean over all scored items (failed items left out)",
    }


def scope_text(scope: dict | None) -> str | None:
    """One sentence naming what a report covers, or None without a scope."""
    if not scope:
        return None
    text = (f"Covers the {scope['pairs']} (editor, item) pairs of this configuration: editors "
            f"{', '.join(scope['editors'])} on the benchmark's {scope['items']} items")
    if scope.get("pairs_without_record"):
        text += f"; {scope['pairs_without_record']} of them have no score yet"
    if scope.get("lines_not_counted"):
        text += (f". {scope['lines_not_counted']} other line(s) in scores.jsonl (other editors or items) "
                 "are kept there but not counted")
    return text + "."


def failure_cell(overall: dict) -> str:
    """``12.5% (7/56)``, with the flag when the rate exceeds FAILURE_RATE_FLAG."""
    text = f"{overall['failure_rate']:.1%} ({overall['n_failed']}/{overall['n']})"
    return f"{text} {FLAG}" if overall["high_failure_rate"] else text


WORST_N = 20


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def visible_controls(text: str) -> str:
    """Control characters (NUL, ESC, DEL, C1; not tab or line breaks) as visible ``\\xNN`` escapes: reports
    never carry them raw (a NUL in an item id would otherwise land in report.md and report.html)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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
