"""Rank correlations between two lists of scores: Spearman's rho and Kendall's tau-b, with ties.

    spearman([1, 2, 3], [1, 3, 2])          # 0.5
    kendall_tau_b([1, 2, 3], [1, 3, 2])     # 0.333...
    ranks = RankedPairs(x, y)               # precomputed once, then for each bootstrap resample:
    ranks.spearman(counts), ranks.kendall(counts)

``RankedPairs`` computes both on a *weighted* sample: ``counts[i]`` copies of the pair (x[i], y[i]).
A bootstrap resample is exactly that (unit i drawn counts[i] times), so a resample costs a few numpy
passes over the n units instead of a sort of the expanded sample. The copies of one unit are tied with
each other in x and in y, as they are in the expanded sample, so the weighted figures equal the
figures of the expanded list (tests/test_agree.py checks this against scipy).

Spearman's rho is Pearson's correlation of the ranks, a tie group taking its mean rank. Kendall's
tau-b = (C - D) / sqrt((n0 - n1) (n0 - n2)): C and D the concordant and discordant pairs, n0 = N(N-1)/2
pairs in all, n1 and n2 the pairs tied in x and in y. Both are None (undefined) when either list is
constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["RankedPairs", "kendall_tau_b", "spearman", "spearman_or_none"]

# Kendall by the (x, y) table (O(kx * ky) a resample) while it has at most max(TABLE_CELLS, TABLE_PER_UNIT * n)
# cells, as for discrete scores; else by sorting (O(n log^2 n)), as for continuous ones.
TABLE_CELLS = 4096
TABLE_PER_UNIT = 4


def _fmean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (ties get their mean rank); pairs with a nan are left out; nan if undefined.

    (Moved here from ``editjudge.aggregate``, which still exports it.)"""
    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result

    pairs = [(x, y) for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    ra, rb = ranks([x for x, _ in pairs]), ranks([y for _, y in pairs])
    ma, mb = _fmean(ra), _fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    norm = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / norm if norm else math.nan


def spearman_or_none(a: Sequence[float], b: Sequence[float]) -> float | None:
    rho = spearman(list(a), list(b))
    return None if math.isnan(rho) else rho


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b of two equally long lists (None when either is constant or shorter than 2)."""
    return RankedPairs(a, b).kendall(np.ones(len(a)))


class RankedPairs:
    """n pairs (x[i], y[i]) ranked once; ``spearman`` and ``kendall`` of any weighting of them."""

    def __init__(self, x: Sequence[float], y: Sequence[float]):
        if len(x) != len(y):
            raise ValueError(f"two lists of different lengths ({len(x)} and {len(y)})")
        self.n = len(x)
        # The group of each unit: its value's index among the distinct values, ascending.
        self._vx, self.gx = np.unique(np.asarray(x, dtype=float), return_inverse=True)
        self._vy, self.gy = np.unique(np.asarray(y, dtype=float), return_inverse=True)
        self.kx, self.ky = len(self._vx), len(self._vy)
        self._order = self._cell = None  # for Kendall's sorted method, made on first use

    @staticmethod
    def _midranks(groups: np.ndarray, k: int, counts: np.ndarray) -> np.ndarray:
        """Each unit's mean rank (1-based) in the weighted sample: its tie group's middle position."""
        totals = np.bincount(groups, weights=counts, minlength=k)
        before = np.cumsum(totals) - totals
        return (before + (totals + 1.0) / 2.0)[groups]

    def spearman(self, counts: np.ndarray) -> float | None:
        counts = np.asarray(counts, dtype=float)
        total = counts.sum()
        if total < 2:
            return None
        rx = self._midranks(self.gx, self.kx, counts)
        ry = self._midranks(self.gy, self.ky, counts)
        mx, my = (counts * rx).sum() / total, (counts * ry).sum() / total
        dx, dy = rx - mx, ry - my
        norm = math.sqrt(float((counts * dx * dx).sum()) * float((counts * dy * dy).sum()))
        # A constant list has norm 0 up to rounding: compare with the scale of the ranks.
        if norm <= 1e-9 * total ** 3:
            return None
        return float((counts * dx * dy).sum()) / norm

    def kendall(self, counts: np.ndarray) -> float | None:
        counts = np.asarray(counts, dtype=float)
        total = counts.sum()
        n0 = total * (total - 1) / 2
        tx = np.bincount(self.gx, weights=counts, minlength=self.kx)
        ty = np.bincount(self.gy, weights=counts, minlength=self.ky)
        n1 = float((tx * (tx - 1)).sum()) / 2
        n2 = float((ty * (ty - 1)).sum()) / 2
        denominator = (n0 - n1) * (n0 - n2)
        if denominator <= 0:
            return None
        if self.kx * self.ky <= max(TABLE_CELLS, TABLE_PER_UNIT * self.n):
            score = self._table_score(counts)
        else:
            score = self._sorted_score(counts, n0 - n1 - n2)
        return score / math.sqrt(denominator)

    def _table_score(self, counts: np.ndarray) -> float:
        """C - D from the weighted contingency table of (x group, y group): concordant pairs are the
        cells below and to the right of a cell, discordant ones below and to the left. O(kx * ky)."""
        table = np.bincount(self.gx * self.ky + self.gy, weights=counts,
                            minlength=self.kx * self.ky).reshape(self.kx, self.ky)
        below = np.cumsum(table[::-1], axis=0)[::-1]              # rows >= a
        below = np.vstack([below[1:], np.zeros((1, self.ky))])    # rows > a
        right = np.cumsum(below[:, ::-1], axis=1)[:, ::-1]        # rows > a, columns >= b
        right = np.hstack([right[:, 1:], np.zeros((self.kx, 1))])  # columns > b
        left = np.cumsum(below, axis=1)                           # rows > a, columns <= b
        left = np.hstack([np.zeros((self.kx, 1)), left[:, :-1]])    # columns < b
        return float((table * (right - left)).sum())

    def _sorted_score(self, counts: np.ndarray, untied_in_one: float) -> float:
        """C - D as Knight's algorithm finds it, for many distinct values (O(n log^2 n) in numpy): with the
        units ordered by (x, y), D is the weighted count of inversions of y; C + D = n0 - n1 - n2 + n3
        (``untied_in_one`` = n0 - n1 - n2; n3 = pairs tied in both)."""
        if self._order is None:
            self._order = np.lexsort((self.gy, self.gx))
            self._cell = np.unique(self.gx * self.ky + self.gy, return_inverse=True)[1]
        cells = np.bincount(self._cell, weights=counts)
        n3 = float((cells * (cells - 1)).sum()) / 2
        kept = self._order[counts[self._order] > 0]
        discordant = _weighted_inversions(self.gy[kept], counts[kept])
        return untied_in_one + n3 - 2 * discordant


def _weighted_inversions(values: np.ndarray, weights: np.ndarray) -> float:
    """sum of w_i w_j over i < j with values[i] > values[j]: a bottom-up merge sort, one level at a time,
    each level's left halves found for all blocks at once by one searchsorted on (block, value) keys."""
    n = len(values)
    values, weights = values.astype(np.int64), weights.astype(float)
    span = int(values.max()) + 2 if n else 1
    position = np.arange(n)
    total, width = 0.0, 1
    while width < n:
        block = position // (2 * width)
        right = (position // width) % 2 == 1
        keys = block * span + values            # each block's halves are sorted by value already
        left_keys = keys[~right]
        cumulative = np.concatenate([[0.0], np.cumsum(weights[~right])])
        end = np.searchsorted(left_keys, block[right] * span + span - 1, side="left")
        start = np.searchsorted(left_keys, keys[right], side="right")
        total += float((weights[right] * (cumulative[end] - cumulative[start])).sum())
        order = np.argsort(keys, kind="stable")  # merge the two halves of every block
        values, weights = values[order], weights[order]
        width *= 2
    return total
