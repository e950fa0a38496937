"""Rankings with their uncertainty: a bootstrap interval for every editor's macro mean and for its rank,
and how often it comes first (README: "Rankings and their uncertainty").

    ranking = macro_ranking(records)        # scores.jsonl records, as editjudge.aggregate reads them
    ranking["editors"]["good-edits"]        # {"macro", "macro_interval", "rank", "rank_interval", "p_first"}

What is resampled, exactly: the items that every editor scored (``aggregate.common_items``), grouped by
category. One bootstrap resample draws, in every category c with n_c common items, n_c of them with
replacement (``bootstrap.resamples(n_c, reps, seed + k)`` for the k-th category in sorted order), so
every category keeps its size; and every editor is scored on the same drawn items (a paired bootstrap),
so that ranks compare like with like. On each resample every editor's statistic is the macro mean (the
mean of its category means over the drawn items: ``macro_common`` of ``aggregate.editor_overall``
computed on the resample), and the editors are ranked on it (1 = highest; tied editors share the mean
of the ranks they span, and the credit for first place). Over ``REPS`` resamples (seed ``SEED``):

- ``macro_interval``: the percentile interval (``bootstrap.percentile_interval``) of the macro means;
- ``rank_interval``: the percentile interval of the ranks;
- ``p_first``: the share of resamples in which the editor ranks first (a k-way tie counts 1/k each).

The point estimates (``macro``, ``rank``) are those of the full common set. The draws are made once per
set of category sizes (``drawn_items``), and the macro means of a batch of resamples are a few numpy sums
over a precomputed (items x editors) array of the scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache

import numpy as np

from ..aggregate import common_items
from .bootstrap import LEVEL, REPS, SEED, percentile_interval, resamples

__all__ = ["drawn_items", "macro_ranking", "mid_ranks", "RankTally", "stratified_resamples"]

CHUNK = 50  # resamples summed at once (chunk x items x editors floats)

METHOD = ("paired bootstrap over the items every editor scored, stratified by category (every category "
          "keeps its size; the same drawn items for every editor); statistic: the macro mean (mean of the "
          "category means); 95% percentile intervals; rank 1 = highest, ties share ranks and first place")


def stratified_resamples(sizes: Sequence[int], reps: int = REPS, seed: int = SEED) -> Iterator[tuple[list[int], ...]]:
    """``reps`` resamples of strata of ``sizes``: per resample, one list of indices per stratum, stratum k
    drawn with replacement by ``bootstrap.resamples(sizes[k], reps, seed + k)`` (so one stratum is
    exactly the plain bootstrap with ``seed``)."""
    return zip(*(resamples(n, reps, seed + k) for k, n in enumerate(sizes)))


@lru_cache(maxsize=4)
def drawn_items(sizes: tuple[int, ...], reps: int = REPS, seed: int = SEED) -> np.ndarray:
    """``stratified_resamples`` as one (reps x sum(sizes)) array of indices into the strata laid end to end
    (stratum k's items at offsets sum(sizes[:k]) onwards). Read-only and kept for the last few sizes: the
    draws depend on the sizes alone and are most of the cost, and one report asks for the same sizes again."""
    offsets = np.cumsum([0, *sizes[:-1]])
    drawn = np.empty((reps, sum(sizes)), dtype=np.int64)
    for r, draw in enumerate(stratified_resamples(sizes, reps, seed)):
        drawn[r] = np.concatenate([np.asarray(rows, dtype=np.int64) + o for rows, o in zip(draw, offsets)])
    drawn.flags.writeable = False
    return drawn


def mid_ranks(values: Sequence[float]) -> list[float]:
    """Rank 1 = the highest value; tied values share the mean of the ranks they span (2 tied for first: 1.5)."""
    return [1.0 + sum(1 for w in values if w > v) + 0.5 * (sum(1 for w in values if w == v) - 1) for v in values]


class RankTally:
    """Collects, over resamples, each unit's statistic and rank and its share of first places."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.values: list[list[float]] = [[] for _ in self.names]
        self.ranks: list[list[float]] = [[] for _ in self.names]
        self.first = [0.0] * len(self.names)
        self.n = 0

    def add(self, values: Sequence[float], rank_on: Sequence[float] | None = None) -> None:
        """One resample's statistic per unit (in ``names`` order), ranked on ``rank_on`` (default ``values``)."""
        keys = values if rank_on is None else rank_on
        ranks = mid_ranks(keys)
        top = max(keys)
        tied = sum(1 for v in keys if v == top)
        for i, (value, key, rank) in enumerate(zip(values, keys, ranks)):
            self.values[i].append(value)
            self.ranks[i].append(rank)
            if key == top:
                self.first[i] += 1.0 / tied
        self.n += 1

    def summary(self, point: Sequence[float], level: float = LEVEL, value_key: str = "macro",
                rank_on: Sequence[float] | None = None) -> dict[str, dict]:
        """``{name: {value_key, value_key_interval, rank, rank_interval, p_first}}`` (intervals as [low, high]);
        ``rank`` ranks ``point`` (or ``rank_on``)."""
        ranks = mid_ranks(point if rank_on is None else rank_on)
        return {name: {value_key: point[i], f"{value_key}_interval": list(percentile_interval(self.values[i], level)),
                       "rank": ranks[i], "rank_interval": list(percentile_interval(self.ranks[i], level)),
                       "p_first": self.first[i] / self.n if self.n else None}
                for i, name in enumerate(self.names)}


def _columns(records: Iterable[Mapping]) -> tuple[list[str], list[str], list[list[list[float]]]]:
    """(editors in first-appearance order, categories sorted, per editor per category the scores of the
    common items in item-id order): the same item order for every editor, so drawn indices pair up."""
    records = list(records)
    common = common_items(records)  # validates the records as aggregate does
    editors = list(dict.fromkeys(r["editor"] for r in records))
    category: dict[str, str] = {}
    score: dict[tuple[str, str], float] = {}
    for r in records:
        if r["item_id"] in common:
            category.setdefault(r["item_id"], r["category"])
            score[(r["editor"], r["item_id"])] = float(r["score"])
    categories = sorted(set(category.values()))
    ids = {c: sorted(i for i, cat in category.items() if cat == c) for c in categories}
    return editors, categories, [[[score[(e, i)] for i in ids[c]] for c in categories] for e in editors]


def macro_ranking(records: Iterable[Mapping], reps: int = REPS, seed: int = SEED, level: float = LEVEL) -> dict:
    """The bootstrap ranking of the editors in ``records`` on their macro mean over the common items (module
    docstring): ``{"method", "statistic", "n_items", "categories": {category: n}, "reps", "seed", "level",
    "editors": {editor: {macro, macro_interval, rank, rank_interval, p_first}}}``. ``editors`` is empty (and
    ``n_items`` 0) when no item was scored by every editor."""
    editors, categories, columns = _columns(records)
    sizes = [len(col) for col in columns[0]] if columns else []
    result = {"method": METHOD, "statistic": "macro_common", "n_items": sum(sizes),
              "categories": dict(zip(categories, sizes)), "reps": reps, "seed": seed, "level": level, "editors": {}}
    if not sizes:
        return result
    # items x editors (items in category order): a resample's category mean is the mean of its drawn rows
    # in that category. Identical editors are identical columns, summed alike: they tie exactly; and the
    # point estimate takes the same path (every item once), so a constant editor's interval is its point.
    block = np.array([[x for col in by_category for x in col] for by_category in columns]).T
    spans = [(int(start), n) for start, n in zip(np.cumsum([0, *sizes[:-1]]), sizes)]

    def macros(drawn: np.ndarray) -> list[list[float]]:
        total = np.zeros((len(drawn), len(editors)))
        for start, n in spans:
            total += block[drawn[:, start:start + n]].sum(axis=1) / n
        return (total / len(spans)).tolist()

    point = macros(np.arange(len(block))[None])[0]
    drawn = drawn_items(tuple(sizes), reps, seed)
    tally = RankTally(editors)
    for start in range(0, reps, CHUNK):
        for values in macros(drawn[start:start + CHUNK]):
            tally.add(values)
    result["editors"] = tally.summary(point, level)
    return result
