"""How far two judges agree on the same edits, and whether they rank the editors the same.

    compare_runs(read_scores("out_qwen/"), read_scores("out_gpt/"))
    # {"join", "overall": {"spearman", "kendall"}, "categories": {...}, "editors": {...}, "pairs": [...],
    #  "leaderboard": {"spearman", "kendall", "changes"}}

Everything is computed over the (item, editor) edits that both judges scored (a failure under either
judge leaves the edit out; ``join`` counts them). Categories are the first run's.

- ``overall`` / ``categories``: Spearman and Kendall tau-b between the two judges' scores of these
  edits, all together and within each category.
- ``editors``: each editor's macro mean under either judge (the mean of its category means over these
  edits, ``editjudge.aggregate``'s convention) and its rank (1 = best; tied means share the better rank).
- ``pairs``: every two editors, their order under either judge (">", "<" or "="), whether it flips, and
  the bootstrap probability that the first is above the second under either judge (a tie counts half).
- ``leaderboard``: Spearman and Kendall tau-b between the two judges' macro means over the editors;
  ``changes`` is whether any pair's order flips.

Intervals and probabilities resample items within the common set (``editjudge.trust.bootstrap``: an item
drawn brings all its edits), 1000 resamples, seed 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import combinations

import numpy as np

from .agreement import correlation_figures
from .bootstrap import LEVEL, REPS, SEED, percentile_interval, resamples
from .correlation import kendall_tau_b, spearman_or_none
from .labels import AgreeInputError, Scored


def _order(first: float, second: float) -> str:
    return ">" if first > second else "<" if first < second else "="


def _ranks(means: list[float]) -> list[int]:
    return [1 + sum(1 for other in means if other > mean) for mean in means]


class _Macro:
    """Each editor's macro mean under weights on the edits (a resample): ``means(weights, scores)``."""

    def __init__(self, editors: list[str], categories: list[str], editor_of: list[int], category_of: list[int]):
        self.n_editors, self.n_categories = len(editors), len(categories)
        self.group = np.array(editor_of, dtype=np.int64) * self.n_categories + np.array(category_of, dtype=np.int64)

    def means(self, weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
        size = self.n_editors * self.n_categories
        sums = np.bincount(self.group, weights=weights * scores, minlength=size).reshape(self.n_editors, -1)
        counts = np.bincount(self.group, weights=weights, minlength=size).reshape(self.n_editors, -1)
        present = counts > 0  # a category none of whose items was drawn is skipped, as aggregate skips it
        category_means = np.where(present, sums / np.where(present, counts, 1.0), 0.0)
        return category_means.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def compare_runs(a: Mapping[tuple[str, str], Scored], b: Mapping[tuple[str, str], Scored],
                 reps: int = REPS, seed: int = SEED) -> dict:
    """The two judges' agreement on their common edits (module docstring)."""
    both = [key for key in a if key in b]
    common = [key for key in both if a[key].score is not None and b[key].score is not None]
    join = {"labels": len(a), "verdicts": len(b), "common": len(common), "failed_under_either": len(both) - len(common),
            "only_in_labels": len(a) - len(both), "only_in_verdicts": len(b) - len(both),
            "category_differs": sum(1 for key in both if a[key].category != b[key].category)}
    if not common:
        raise AgreeInputError(f"the two runs have no edit that both scored ({len(a)} and {len(b)} score records, "
                              f"{len(both)} (item, editor) pairs in both)")
    xa = [a[key].score for key in common]
    xb = [b[key].score for key in common]
    items = [key[0] for key in common]
    categories = list(dict.fromkeys(a[key].category for key in common))
    result = {"join": join, "overall": correlation_figures(xa, xb, items, reps, seed), "categories": {}}
    for category in categories:
        rows = [k for k, key in enumerate(common) if a[key].category == category]
        result["categories"][category] = correlation_figures([xa[k] for k in rows], [xb[k] for k in rows],
                                                             [items[k] for k in rows], reps, seed)
    result.update(_leaderboards(common, a, xa, xb, items, categories, reps, seed))
    return result


def _leaderboards(common, a, xa, xb, items, categories, reps, seed) -> dict:
    editors = list(dict.fromkeys(key[1] for key in common))
    macro = _Macro(editors, categories, [editors.index(key[1]) for key in common],
                   [categories.index(a[key].category) for key in common])
    scores_a, scores_b = np.array(xa), np.array(xb)
    index = {item: k for k, item in enumerate(dict.fromkeys(items))}
    cluster = np.array([index[item] for item in items], dtype=np.int64)
    ones = np.ones(len(common))
    point_a, point_b = macro.means(ones, scores_a).tolist(), macro.means(ones, scores_b).tolist()
    ranks_a, ranks_b = _ranks(point_a), _ranks(point_b)

    draws_a, draws_b, rho, tau = [], [], [], []
    above_a = np.zeros((len(editors), len(editors)))
    above_b = np.zeros((len(editors), len(editors)))
    for rows in resamples(len(index), reps, seed):
        weights = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(index))[cluster].astype(float)
        ma, mb = macro.means(weights, scores_a), macro.means(weights, scores_b)
        draws_a.append(ma)
        draws_b.append(mb)
        above_a += (ma[:, None] > ma[None, :]) + 0.5 * (ma[:, None] == ma[None, :])
        above_b += (mb[:, None] > mb[None, :]) + 0.5 * (mb[:, None] == mb[None, :])
        for out, value in ((rho, spearman_or_none(ma, mb)), (tau, kendall_tau_b(ma, mb) if len(editors) > 1 else None)):
            if value is not None:
                out.append(value)
    edits = Counter(key[1] for key in common)
    by_editor = {}
    for e, editor in enumerate(editors):
        low_a, high_a = percentile_interval([float(d[e]) for d in draws_a], LEVEL)
        low_b, high_b = percentile_interval([float(d[e]) for d in draws_b], LEVEL)
        n = edits[editor]
        by_editor[editor] = {"macro_a": {"point": point_a[e], "low": low_a, "high": high_a, "n": n},
                             "macro_b": {"point": point_b[e], "low": low_b, "high": high_b, "n": n},
                             "rank_a": ranks_a[e], "rank_b": ranks_b[e]}
    pairs = []
    for i, j in combinations(range(len(editors)), 2):
        order_a, order_b = _order(point_a[i], point_a[j]), _order(point_b[i], point_b[j])
        pairs.append({"first": editors[i], "second": editors[j], "order_a": order_a, "order_b": order_b,
                      "flipped": order_a != order_b, "p_first_above_a": float(above_a[i, j]) / reps,
                      "p_first_above_b": float(above_b[i, j]) / reps})
    board = {"changes": any(p["flipped"] for p in pairs), "n_editors": len(editors)}
    for name, point, draws in (("spearman", spearman_or_none(point_a, point_b), rho),
                               ("kendall", kendall_tau_b(point_a, point_b) if len(editors) > 1 else None, tau)):
        low, high = percentile_interval(draws, LEVEL)
        board[name] = {"point": point, "low": low, "high": high, "n": len(editors)}
    return {"editors": by_editor, "pairs": pairs, "leaderboard": board}
