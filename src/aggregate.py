"""Aggregate per-item judge scores: pure functions over ``scores.jsonl`` records, no I/O.

A record is a dict with at least ``item_id``, ``category``, ``editor`` and ``score`` (a number, or
None for a failed item); other keys (raw_output, error, fallback, sub_scores, ...) are ignored.
Failed items are counted everywhere; the headline means leave them out.

    records = [json.loads(line) for line in open("out/scores.jsonl")]
    category_stats(records)["source"]["style"].to_dict()  # n, n_failed, mean, std, ci95, ...
    editor_overall(records, floor=0.0)["source"]["macro"]

Weighting is explicit: ``macro`` is the mean of the category means (GEdit-Bench's convention, so
every category weighs the same however many items it has), ``micro`` the mean over all scored
items. Editors and categories keep the order in which they first appear.

Dropping failures flatters an editor that fails on hard items, so beside the headline ``macro``
(GEdit-Bench's: failed items dropped, categories with nothing scored skipped) ``editor_overall``
gives two means that do not: ``macro_failed_as_min`` counts every failed item as the scale's
minimum (``floor``), and ``macro_common`` averages only the items that every editor scored (the
same items for all, so a like-for-like comparison). Both are macro means, comparable with the
headline. An editor whose failure rate exceeds ``FAILURE_RATE_FLAG`` is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache

from .trust.correlation import spearman  # moved to editjudge.trust; still exported here

__all__ = ["FAILURE_RATE_FLAG", "Stats", "category_stats", "common_items", "editor_overall", "spearman", "t_quantile"]

FAILURE_RATE_FLAG = 0.05  # an editor failing more often than this is flagged in every report


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, as in Numerical Recipes)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t distribution with ``df`` degrees of freedom.

    Inverts the exact CDF (regularized incomplete beta, continued fraction to 1e-15) by
    bisection to machine precision: agrees with scipy.stats.t.ppf to about 1e-9 relative or
    better for df from 1 to 10^6 (checked in tests/test_aggregate.py when scipy is present).
    """
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df == 1:  # Cauchy: closed form, and the tail is too heavy for a quick bracket
        return math.tan(math.pi * (p - 0.5))
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_upper_tail(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Stats:
    """One editor's scores in one category. Means, spread and extremes cover scored items only."""

    n: int  # items, failed included
    n_failed: int
    n_scored: int
    mean: float | None  # None when nothing was scored
    std: float | None  # sample standard deviation (ddof=1); None below 2 scored items
    ci95: float | None  # half-width of the 95% t interval for the mean: t_{0.975, n_scored-1} * std / sqrt(n_scored)
    min: float | None
    max: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _stats(scores: list[float | None]) -> Stats:
    scored = [s for s in scores if s is not None]
    k = len(scored)
    mean = math.fsum(scored) / k if k else None
    std = ci95 = None
    if k >= 2:
        std = math.sqrt(math.fsum((s - mean) ** 2 for s in scored) / (k - 1))
        ci95 = t_quantile(0.975, k - 1) * std / math.sqrt(k)
    return Stats(n=len(scores), n_failed=len(scores) - k, n_scored=k, mean=mean, std=std, ci95=ci95,
                 min=min(scored) if scored else None, max=max(scored) if scored else None)


def _grouped(records: Iterable[Mapping]) -> dict[str, dict[str, list[float | None]]]:
    """editor -> category -> scores, in first-appearance order; malformed records are a ValueError."""
    return {editor: {category: [score for _, score in pairs] for category, pairs in by_category.items()}
            for editor, by_category in _grouped_items(records).items()}


def _grouped_items(records: Iterable[Mapping]) -> dict[str, dict[str, list[tuple[str, float | None]]]]:
    """editor -> category -> (item id, score) pairs, as ``_grouped``."""
    groups: dict[str, dict[str, list[tuple[str, float | None]]]] = {}
    seen: set[tuple[str, str]] = set()
    for number, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"score record {number}: expected a dict, got {type(record).__name__}")
        where = f"score record {number} (item {record.get('item_id')!r}, editor {record.get('editor')!r})"
        bad = [k for k in ("item_id", "category", "editor") if not isinstance(record.get(k), str)]
        if bad or "score" not in record:
            raise ValueError(f"{where}: missing or non-string field(s) {bad + ([] if 'score' in record else ['score'])}")
        score = record["score"]
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score)):
            raise ValueError(f"{where}: score must be a finite number or None (failed), got {score!r}")
        key = (record["editor"], record["item_id"])
        if key in seen:
            raise ValueError(f"{where}: the same editor and item appear twice")
        seen.add(key)
        groups.setdefault(record["editor"], {}).setdefault(record["category"], []).append(
            (record["item_id"], None if score is None else float(score)))
    return groups


def category_stats(records: Iterable[Mapping]) -> dict[str, dict[str, Stats]]:
    """``{editor: {category: Stats}}``."""
    return {editor: {category: _stats(scores) for category, scores in by_category.items()}
            for editor, by_category in _grouped(records).items()}


def _macro(by_category: Mapping[str, list[float | None]]) -> float | None:
    """The mean of the category means, over the categories with a scored item; None without any."""
    means = [st.mean for st in map(_stats, by_category.values()) if st.mean is not None]
    return math.fsum(means) / len(means) if means else None


def _macro_ci95(stats: Iterable[Stats]) -> float | None:
    """Half-width of the 95% interval for the macro mean (``_macro``) of these categories' stats.

    The category means are independent, so the macro mean's variance is sum(std_c^2 / n_c) / C^2;
    its t quantile takes the Welch-Satterthwaite degrees of freedom (for one category this is that
    category's ``ci95``). None where a scored category has under 2 scored items (no spread known).
    """
    scored = [st for st in stats if st.mean is not None]
    if not scored or any(st.std is None for st in scored):
        return None
    variances = [st.std ** 2 / st.n_scored for st in scored]
    total = math.fsum(variances)
    if total == 0.0:
        return 0.0
    df = total ** 2 / math.fsum(v ** 2 / (st.n_scored - 1) for v, st in zip(variances, scored))
    return t_quantile(0.975, df) * math.sqrt(total) / len(scored)


def _common(groups: Mapping[str, Mapping[str, list[tuple[str, float | None]]]]) -> set[str]:
    scored = [{item for pairs in by_category.values() for item, score in pairs if score is not None}
              for by_category in groups.values()]
    return set.intersection(*scored) if scored else set()


def common_items(records: Iterable[Mapping]) -> set[str]:
    """The item ids that every editor in ``records`` scored (``macro_common`` averages these)."""
    return _common(_grouped_items(records))


def editor_overall(records: Iterable[Mapping], floor: float = 0.0) -> dict[str, dict]:
    """``{editor: {macro, macro_ci95, macro_failed_as_min, macro_common, micro, n, n_failed, n_scored, n_common,
    failure_rate, high_failure_rate, n_categories, n_categories_scored, unscored_categories}}``.

    ``macro`` (the headline, GEdit-Bench's convention) averages the means of the categories with at
    least one scored item; the others are listed in ``unscored_categories`` (and counted in
    ``n_categories`` only). ``macro_failed_as_min`` is the macro mean with every failed item scored
    ``floor`` (the scale's minimum), so every item and category counts. ``macro_common`` is the macro
    mean over the ``n_common`` items that every editor in ``records`` scored (None when there are
    none). ``macro_ci95``: the half-width of the headline's 95% interval (``_macro_ci95``). ``high_failure_rate``: the failure rate exceeds ``FAILURE_RATE_FLAG``. ``macro`` and
    ``micro`` are None when the editor has no scored item at all.
    """
    groups = _grouped_items(records)
    common = _common(groups)
    overall = {}
    for editor, by_category in groups.items():
        scores = {category: [score for _, score in pairs] for category, pairs in by_category.items()}
        stats = {category: _stats(values) for category, values in scores.items()}
        scored = [x for values in scores.values() for x in values if x is not None]
        n = sum(st.n for st in stats.values())
        failure_rate = (n - len(scored)) / n
        shared = {category: [score for item, score in pairs if item in common] for category, pairs in by_category.items()}
        overall[editor] = {
            "macro": _macro(scores),
            "macro_ci95": _macro_ci95(stats.values()),
            "macro_failed_as_min": _macro({category: [floor if x is None else x for x in values]
                                           for category, values in scores.items()}),
            "macro_common": _macro(shared),
            "micro": math.fsum(scored) / len(scored) if scored else None,
            "n": n,
            "n_failed": n - len(scored),
            "n_scored": len(scored),
            "n_common": sum(len(values) for values in shared.values()),
            "failure_rate": failure_rate,
            "high_failure_rate": failure_rate > FAILURE_RATE_FLAG,
            "n_categories": len(stats),
            "n_categories_scored": sum(1 for st in stats.values() if st.mean is not None),
            "unscored_categories": [c for c, st in stats.items() if st.mean is None],
        }
    return overall
