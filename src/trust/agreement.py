"""How far a judge agrees with people: pairwise verdicts against votes, scores against mean opinion scores.

    joined, join = join_pairs(read_pair_labels(path), None)   # GenAI-Bench: its judge is in the same file
    pair_agreement(joined)["figures"]["accuracy"]              # {"point", "low", "high", "n"}
    score_agreement(mos, read_scores("out/"))["figures"]["spearman"]

Every figure is ``{"point", "low", "high", "n"}``: the estimate on all units and its 95% percentile
bootstrap interval (``editjudge.trust.bootstrap``: 1000 resamples, seed 0). Pairs are resampled for
pairwise figures; items (all of an item's edits together) for score correlations.

Pairwise figures (people's vote p_i, the judge's verdict j_i, over the n pairs in both files):
- ``accuracy``: the share of pairs where j_i = p_i over the four classes (A>B, B>A, A=B=Good, A=B=Bad).
  An unparseable verdict is wrong, as GenAI-Bench counts it.
- ``accuracy_without_ties``: over the pairs where the person preferred one side (p_i is A>B or B>A),
  the share where the judge picked that same side; a judge's tie or unparseable verdict there is wrong.
- ``kappa``: Cohen's kappa over the four classes, (p_o - p_e) / (1 - p_e), p_o = ``accuracy`` and
  p_e = sum over classes of (the people's share of the class) x (the judge's share); an unparseable
  verdict is a fifth judge class that no vote matches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .bootstrap import LEVEL, REPS, SEED, bootstrap, percentile_interval
from .correlation import RankedPairs
from .labels import FLIPPED, VERDICTS, AgreeInputError, PairKey, PairLabels, Scored, key_text

UNPARSEABLE = "unparseable"
JUDGE_CLASSES = (*VERDICTS, UNPARSEABLE)
EXAMPLES = 5  # keys named when pairs are in one file only


def figure(statistic: Callable[[list[int]], float | None], n: int, reps: int = REPS, seed: int = SEED) -> dict:
    """``{"point", "low", "high", "n"}``: ``statistic`` on every unit and its bootstrap percentile interval."""
    point = statistic(list(range(n))) if n else None
    low, high = percentile_interval(bootstrap(statistic, n, reps, seed), LEVEL)
    return {"point": point, "low": low, "high": high, "n": n}


def join_pairs(labels: PairLabels, verdicts: Mapping[PairKey, str | None] | None
               ) -> tuple[list[tuple[PairKey, str, str | None]], dict]:
    """``[(key, vote, verdict)]`` for the pairs in both, and what was left out of either.

    ``verdicts`` None: the judge's verdicts in the labels file (GenAI-Bench's ``model_vote``). Labels that
    name the editors join on (item, a, b), a verdict for (item, b, a) read swapped; labels that do not
    join on the item alone, so the verdicts must then hold one pair per item."""
    if verdicts is None:
        if labels.judge is None:
            raise AgreeInputError("these labels carry no judge's verdicts: give a VERDICTS file or output folder")
        verdicts = labels.judge
    lookup: dict[PairKey, tuple[PairKey, bool]] = {}
    for key in verdicts:
        if labels.named_editors:
            lookup[key] = (key, False)
            lookup.setdefault((key[0], key[2], key[1]), (key, True))
        else:
            short = (key[0], None, None)
            if short in lookup:
                raise AgreeInputError(f"the labels name no editors, so they join on the item, but the verdicts hold "
                                      f"several pairs of {key_text(short)}")
            lookup[short] = (key, False)
    joined, used = [], set()
    for key, vote in labels.people.items():
        if key in lookup:
            found, swapped = lookup[key]
            used.add(found)
            verdict = verdicts[found]
            joined.append((key, vote, FLIPPED[verdict] if swapped else verdict))
    only_labels = [key for key in labels.people if key not in lookup]
    only_verdicts = [key for key in verdicts if key not in used]
    join = {"labels": len(labels.people), "verdicts": len(verdicts), "common": len(joined),
            "only_in_labels": len(only_labels), "only_in_verdicts": len(only_verdicts),
            "examples_only_in_labels": [key_text(k) for k in only_labels[:EXAMPLES]],
            "examples_only_in_verdicts": [key_text(k) for k in only_verdicts[:EXAMPLES]]}
    if not joined:
        raise AgreeInputError(f"no pair in common: {len(labels.people)} labelled pairs, {len(verdicts)} verdicts "
                              f"(e.g. labels {join['examples_only_in_labels'][:2]}, verdicts "
                              f"{join['examples_only_in_verdicts'][:2]})")
    return joined, join


def pair_agreement(joined: list[tuple[PairKey, str, str | None]], reps: int = REPS, seed: int = SEED) -> dict:
    """Accuracy, accuracy without ties and Cohen's kappa of the verdicts against the votes (module docstring)."""
    person = [VERDICTS.index(vote) for _, vote, _ in joined]
    judge = [JUDGE_CLASSES.index(UNPARSEABLE if verdict is None else verdict) for _, _, verdict in joined]
    correct = [int(p == j) for p, j in zip(person, judge)]
    decisive = [int(p < 2) for p in person]  # A>B or B>A
    decisive_correct = [c * d for c, d in zip(correct, decisive)]
    codes = [p * len(JUDGE_CLASSES) + j for p, j in zip(person, judge)]
    n = len(joined)

    def accuracy(rows: list[int]) -> float:
        return sum([correct[i] for i in rows]) / len(rows)

    def accuracy_without_ties(rows: list[int]) -> float | None:
        total = sum([decisive[i] for i in rows])
        return sum([decisive_correct[i] for i in rows]) / total if total else None

    def kappa(rows: list[int]) -> float | None:
        cells = [0] * (len(VERDICTS) * len(JUDGE_CLASSES))
        for i in rows:
            cells[codes[i]] += 1
        return cohen_kappa(cells, len(rows))

    confusion = {vote: {verdict: 0 for verdict in JUDGE_CLASSES} for vote in VERDICTS}
    for p, j in zip(person, judge):
        confusion[VERDICTS[p]][JUDGE_CLASSES[j]] += 1
    figures = {"accuracy": figure(accuracy, n, reps, seed),
               "accuracy_without_ties": figure(accuracy_without_ties, n, reps, seed),
               "kappa": figure(kappa, n, reps, seed)}
    figures["accuracy_without_ties"]["n"] = sum(decisive)
    return {"figures": figures, "confusion": confusion, "unparseable": sum(1 for j in judge if j == len(VERDICTS))}


def cohen_kappa(cells: list[int], n: int) -> float | None:
    """Cohen's kappa of a people x judge table flattened row by row (4 vote rows, 5 verdict columns, the
    fifth unparseable); None when the expected agreement is 1 (one class only on both sides)."""
    width = len(JUDGE_CLASSES)
    observed = sum(cells[k * width + k] for k in range(len(VERDICTS))) / n
    rows = [sum(cells[k * width:(k + 1) * width]) / n for k in range(len(VERDICTS))]
    columns = [sum(cells[k * width + c] for k in range(len(VERDICTS))) / n for c in range(len(VERDICTS))]
    expected = sum(r * c for r, c in zip(rows, columns))
    return None if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def correlation_figures(x: list[float], y: list[float], items: list[str], reps: int = REPS, seed: int = SEED) -> dict:
    """Spearman and Kendall tau-b of x and y, the bootstrap resampling ``items`` (a unit's item: its edits
    by several editors are drawn together). ``n`` counts the units, ``n_items`` the items."""
    ranked = RankedPairs(x, y)
    index = {item: k for k, item in enumerate(dict.fromkeys(items))}
    cluster = np.array([index[item] for item in items], dtype=np.int64)

    def weights(rows: list[int]) -> np.ndarray:
        return np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(index))[cluster].astype(float)

    result = {}
    for name, method in (("spearman", ranked.spearman), ("kendall", ranked.kendall)):
        result[name] = figure(lambda rows, method=method: method(weights(rows)), len(index), reps, seed)
        result[name].update(n=len(x), n_items=len(index))
    return result


def score_agreement(mos: Mapping[tuple[str, str | None], float], scores: Mapping[tuple[str, str], Scored],
                    reps: int = REPS, seed: int = SEED) -> dict:
    """Spearman and Kendall tau-b of a judge's scores against mean opinion scores over the (item, editor)
    edits in both. MOS without editors join on the item, so the judge must then score one edit per item.
    Edits the judge failed on are counted in ``judge_failed`` and left out."""
    named = any(editor is not None for _, editor in mos)
    lookup: dict[tuple[str, str | None], tuple[str, str]] = {}
    for key in scores:
        short = key if named else (key[0], None)
        if short in lookup:
            raise AgreeInputError(f"the mean opinion scores name no editor, so they join on the item, but the judge "
                                  f"scored several edits of item {key[0]!r} ({lookup[short][1]}, {key[1]})")
        lookup[short] = key
    both = [(key, lookup[key]) for key in mos if key in lookup]
    scored = [(key, found) for key, found in both if scores[found].score is not None]
    if not scored:
        raise AgreeInputError(f"no edit in common with a judge's score: {len(mos)} mean opinion scores, {len(scores)} "
                              f"judge scores, {len(both)} in both")
    used = {found for _, found in both}
    join = {"labels": len(mos), "verdicts": len(scores), "common": len(scored), "judge_failed": len(both) - len(scored),
            "only_in_labels": len(mos) - len(both), "only_in_verdicts": len(scores) - len(used),
            "examples_only_in_labels": [key_text(k) for k in mos if k not in lookup][:EXAMPLES]}
    figures = correlation_figures([mos[key] for key, _ in scored], [scores[found].score for _, found in scored],
                                  [key[0] for key, _ in scored], reps, seed)
    return {"figures": figures, "join": join}
