"""The nonparametric bootstrap that every interval in ``editjudge.trust`` uses: one seeded generator,
resampling units (items, pairs) with replacement, and the percentile interval.

    draws = bootstrap(lambda rows: accuracy([pairs[i] for i in rows]), len(pairs))
    low, high = percentile_interval(draws)

A statistic that is undefined on a resample (every pair a tie, a constant column) returns None there;
those draws are left out, and ``percentile_interval`` of no draws is ``(None, None)``. The seed is fixed
(``SEED``) so that a figure printed twice is the same figure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

REPS = 1000
SEED = 0
LEVEL = 0.95


def resamples(n: int, reps: int = REPS, seed: int = SEED):
    """``reps`` lists of ``n`` indices drawn with replacement from ``range(n)``."""
    rng = random.Random(seed)
    for _ in range(reps):
        yield [rng.randrange(n) for _ in range(n)]


def bootstrap(statistic: Callable[[list[int]], float | None], n: int, reps: int = REPS,
              seed: int = SEED) -> list[float]:
    """``statistic`` of each resample of ``range(n)`` (the indices of the units drawn); None and
    non-finite values are left out."""
    if n == 0:
        return []
    draws = []
    for rows in resamples(n, reps, seed):
        value = statistic(rows)
        if value is not None and math.isfinite(value):
            draws.append(float(value))
    return draws


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between order statistics (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def percentile_interval(draws: Sequence[float], level: float = LEVEL) -> tuple[float | None, float | None]:
    """The central ``level`` interval of ``draws`` (percentile bootstrap), or (None, None) for no draws."""
    if not draws:
        return None, None
    ordered = sorted(draws)
    tail = (1.0 - level) / 2.0
    return quantile(ordered, tail), quantile(ordered, 1.0 - tail)
