"""Bradley-Terry strengths from pairwise verdicts (``OUT/pairwise.jsonl``), with bootstrap intervals.

    pairs = read_pairwise(out / "pairwise.jsonl")   # {"item_id", "category", "a", "b", "verdict"} per line
    pairwise_ranking(pairs)["editors"]["good-edits"]  # {"strength", "strength_interval", "rank", ...}

The model: P(i beats j) = s_i / (s_i + s_j). Verdicts count as wins: "A>B" one win for ``a``, "B>A" one
for ``b``, "A=B=Good" and "A=B=Bad" half a win each way; a null verdict (the judge gave none) is left
out and counted (``n_null``). With W_i editor i's wins and n_ij the verdicts between i and j, the
maximum-likelihood strengths are found by the MM algorithm of Hunter (2004, "MM algorithms for
generalized Bradley-Terry models", Ann. Statist. 32(1), eq. 3):

    s_i <- W_i / sum_{j != i} n_ij / (s_i + s_j)

all editors at once, then normalised so that the log-strengths sum to 0 (geometric mean 1: a strength of
2 beats a strength-1 editor two times in three), until no log-strength moves by more than ``TOL``. The
maximum exists only when the editors cannot be split in two groups with one never winning (not even a
tie) against the other (Hunter's Assumption 1: the "beats or ties" graph is strongly connected); where it
does not (an editor that never loses has infinite strength) the strengths are None, with the reason.

Intervals: the items are resampled as for the macro ranking (``rankings.drawn_items``: by category, every
category keeps its size, all of an item's verdicts go together), the model refitted on each resample
(started from the full fit), and the percentile interval taken over the resamples where the maximum
exists (``n_resamples_used`` of ``reps``). A resample's win matrix is how often it drew each item times
the items' precomputed win credit (one matrix product for all resamples), and the MM iteration runs on
all resamples at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..jsonl import read_jsonl
from .bootstrap import LEVEL, REPS, SEED
from .rankings import RankTally, drawn_items

__all__ = ["VERDICTS", "fit_bradley_terry", "pairwise_ranking", "read_pairwise"]

# Win credit of (a, b) per verdict; None: no verdict, left out and counted.
VERDICTS = {"A>B": (1.0, 0.0), "B>A": (0.0, 1.0), "A=B=Good": (0.5, 0.5), "A=B=Bad": (0.5, 0.5)}
TOL = 1e-9  # largest change of a log-strength at convergence
MAX_ITER = 100_000


def read_pairwise(path: Path) -> list[dict]:
    """The verdict records of ``path`` (``pairwise.jsonl``); a record without the keys or with an unknown
    verdict is a ValueError naming its line."""
    records = read_jsonl(Path(path))
    for number, record in enumerate(records, start=1):
        bad = [k for k in ("item_id", "category", "a", "b") if not isinstance(record.get(k), str)]
        if bad or "verdict" not in record:
            raise ValueError(f"{path}: record {number}: missing or non-string field(s) {bad or ['verdict']}")
        if record["verdict"] is not None and record["verdict"] not in VERDICTS:
            raise ValueError(f"{path}: record {number}: unknown verdict {record['verdict']!r} "
                             f"(expected one of {sorted(VERDICTS)} or null)")
        if record["a"] == record["b"]:
            raise ValueError(f"{path}: record {number}: an editor compared with itself ({record['a']!r})")
    return records


def _connected(wins: np.ndarray) -> np.ndarray:
    """Per matrix of the stack ``wins`` (R x k x k): whether every editor reaches every other along "won
    (or tied) against" edges (the transitive closure of the edges, by repeated squaring, is all true)."""
    k = wins.shape[-1]
    reach = ((wins > 0) | np.eye(k, dtype=bool)).astype(np.float64)
    for _ in range(max(1, math.ceil(math.log2(k)))):
        reach = (reach @ reach > 0).astype(np.float64)
    return reach.reshape(len(reach), -1).min(axis=1) > 0


def _mm(wins: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Hunter's MM iteration on a stack of win matrices (R x k x k) at once, from ``start`` (R x k): every
    stack's strengths, log-strengths summing to 0, once no log-strength of any moves by more than TOL."""
    total = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    s = start
    for _ in range(MAX_ITER):
        new = won / (total / (s[:, :, None] + s[:, None, :])).sum(axis=2)
        new /= np.exp(np.log(new).mean(axis=1, keepdims=True))
        moved = np.abs(np.log(new) - np.log(s)).max()
        s = new
        if moved < TOL:
            break
    return s


def fit_bradley_terry(wins: Sequence[Sequence[float]], start: Sequence[float] | None = None) -> list[float] | None:
    """Maximum-likelihood strengths (geometric mean 1) for the win credit matrix ``wins`` (``wins[i][j]``:
    i's wins against j, ties counted half each way) by Hunter's MM iteration; None where no finite maximum
    exists (module docstring). ``start``: initial strengths (all 1 by default)."""
    matrix = np.asarray(wins, dtype=np.float64)[None]
    k = matrix.shape[-1]
    if k < 2 or not _connected(matrix)[0]:
        return None
    first = np.ones((1, k)) if start is None else np.asarray(start, dtype=np.float64)[None]
    return [float(v) for v in _mm(matrix, first)[0]]


def _credit(pairs: Iterable[Mapping]) -> tuple[list[str], list[list[str]], np.ndarray, int]:
    """(editors, item ids per category (categories and ids sorted), per item in that order its k x k win
    credit matrix flattened (N x k*k), null verdicts)."""
    editors: dict[str, int] = {}  # name -> index, in first-appearance order among the verdicts given
    credit: dict[str, list[tuple[int, int, float, float]]] = {}
    category: dict[str, str] = {}
    nulls = 0
    for p in pairs:
        if p["verdict"] is None:
            nulls += 1
            continue
        a, b = (editors.setdefault(p[side], len(editors)) for side in ("a", "b"))
        category.setdefault(p["item_id"], p["category"])
        credit.setdefault(p["item_id"], []).append((a, b, *VERDICTS[p["verdict"]]))
    k = len(editors)
    ids = [sorted(i for i, c in category.items() if c == cat) for cat in sorted(set(category.values()))]
    rows = np.zeros((len(category), k, k))
    for n, item in enumerate(i for group in ids for i in group):
        for a, b, wa, wb in credit[item]:
            rows[n, a, b] += wa
            rows[n, b, a] += wb
    return list(editors), ids, rows.reshape(len(category), k * k), nulls


def pairwise_ranking(pairs: Iterable[Mapping], reps: int = REPS, seed: int = SEED, level: float = LEVEL) -> dict:
    """Bradley-Terry strengths of the editors in ``pairs`` with bootstrap intervals (module docstring):
    ``{"method", "normalisation", "n_items", "n_verdicts", "n_null", "reps", "seed", "level",
    "n_resamples_used", "reason", "editors": {editor: {strength, strength_interval, rank, rank_interval,
    p_first, wins, verdicts}}}``; strengths and intervals are None where no finite maximum exists (``reason``)."""
    editors, ids, rows, nulls = _credit(pairs)
    k = len(editors)
    full = rows.sum(axis=0).reshape(k, k)
    won = full.sum(axis=1)
    verdicts = (full + full.T).sum(axis=1)
    result = {"method": "Bradley-Terry, maximum likelihood by Hunter's MM algorithm; ties half a win each way; "
                        "intervals: stratified bootstrap over items, 95% percentile",
              "normalisation": "log-strengths sum to 0 (geometric mean 1)",
              "n_items": len(rows), "n_verdicts": round(float(verdicts.sum()) / 2), "n_null": nulls,
              "reps": reps, "seed": seed, "level": level, "n_resamples_used": 0, "reason": None, "editors": {}}
    point = fit_bradley_terry(full)
    if point is None:
        result["reason"] = ("fewer than two editors with verdicts" if k < 2 else "no finite strengths: some editors "
                            "never win (or tie) against the others, so their strength is 0 or theirs unbounded")
        result["editors"] = {e: {"strength": None, "strength_interval": [None, None], "rank": None,
                                 "rank_interval": [None, None], "p_first": None, "wins": float(won[i]),
                                 "verdicts": round(float(verdicts[i]))} for i, e in enumerate(editors)}
        return result
    # Each resample as how often it drew each item: counts (reps x N) @ per-item credit (N x k*k).
    drawn = drawn_items(tuple(len(group) for group in ids), reps, seed)
    counts = np.zeros((len(drawn), len(rows)))
    np.add.at(counts, (np.arange(len(drawn))[:, None], drawn), 1.0)
    stack = (counts @ rows).reshape(len(drawn), k, k)
    stack = stack[_connected(stack)]
    fitted = _mm(stack, np.tile(np.asarray(point), (len(stack), 1))) if len(stack) else stack[:, 0]
    tally = RankTally(editors)
    for strengths in fitted.tolist():
        # ranked on log-strengths rounded well above the fit's tolerance, so that equal editors tie
        tally.add(strengths, rank_on=[round(math.log(v), 6) for v in strengths])
    result["n_resamples_used"] = tally.n
    result["editors"] = tally.summary(point, level, value_key="strength",
                                      rank_on=[round(math.log(v), 6) for v in point])
    for i, e in enumerate(editors):
        result["editors"][e].update(wins=float(won[i]), verdicts=round(float(verdicts[i])))
    return result
