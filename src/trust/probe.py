"""Probes: does this judge see what it should? Edits made from the benchmark's own items whose right
score is known without asking anyone, scored by the judge, each mean checked against a threshold.

    from editjudge.trust.probe import run_probes
    result = run_probes(score, items, edits, scale=(0, 10))   # score(images, instructions, sources) -> fields
    result["verdict"]["text"]        # "this judge is unfit for rubric simple: it ..."

The probes (``PROBES``), each on the same items:

- ``unchanged``: the item's source given back as its edit: the instruction was not followed, so the
  semantics (``SC`` of a rubric that has it, else the score) must be low;
- ``black``, ``white``: a blank image of the source's size (at most ``MAX_SIDE`` on a side): nothing
  is left of the picture, so the quality (``PQ``, else the score) must be low. Both, not black alone:
  a judge that reads brightness passes black and fails white, and the verdict says so;
- ``noise``: uniform random pixels (seeded): quality must be low;
- ``wrong_instruction``: an edit of the run's first editor (``OUT/edits``) with another item's
  instruction (of another category when there is one): semantics must be low. Without edits it is
  skipped, and the result says why;
- ``repeat``: the same inputs (those edits with their own instructions, else the sources) scored
  twice: the scores must agree; a judge that samples shows here.

Thresholds are shares of the judge's scale ``(low, high)``: a "must be low" probe passes when its
mean is below ``low + LOW_SHARE * (high - low)`` (3.0 on 0-10), ``repeat`` when the mean absolute
difference of its two passes is at most ``REPEAT_SHARE`` of the scale (0.2 on 0-10). Why 30%: every
rubric editjudge ships anchors "not done at all" and "heavily damaged" at 0 of 10; 30% leaves a judge
that hedges two or three points room, and stays well below the middling 5 to 6 that a judge blind to
the question gives everything. It is absolute, not relative to the real edits' mean, so that a good
judge of a bad editor (real edits that score low too) is not called unfit; the real edits' mean is
shown beside it. Why 2%: a greedy judge gives the same input the same answer up to numerical noise
(batch padding on a GPU moves a score by far less); a sampling judge moves whole points.

A judge that fails any probe is unfit for that rubric. Passing them does not make it fit: the probes
find judges that cannot see; they do not measure agreement with people.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

LOW_SHARE = 0.3
REPEAT_SHARE = 0.02
NOISE_SEED = 0
SEMANTICS, QUALITY = "SC", "PQ"  # the sub-scores of viescore and editscore; other rubrics: the score

# score(images, instructions, sources) -> one dict of score fields per image (``judge.judge_items``'s)
ScoreFn = Callable[[list, list, list], list]


@dataclass(frozen=True)
class Probe:
    name: str
    shows: str      # what the judge is given
    expect: str     # what a judge that sees gives it
    view: str       # "semantics", "quality" or "score"
    failing: str    # "it ..." when it fails: {mean} and {ref} are filled in


PROBES = (
    Probe("unchanged", "the source given back as its edit", "low semantics (the instruction was not followed)",
          "semantics", "scores the unchanged source {mean} (the first editor's edits: {ref}): it does "
          "not see whether the instruction was followed"),
    Probe("black", "a black image", "low quality", "quality", "scores a black image {mean}: it does not see quality"),
    Probe("white", "a white image", "low quality", "quality", "scores a white image {mean}: it does not see quality"),
    Probe("noise", "random noise", "low quality", "quality", "scores random noise {mean}: it does not see quality"),
    Probe("wrong_instruction", "a real edit with another item's instruction", "low semantics",
          "semantics", "scores a real edit with another item's instruction {mean} (with its own: {ref}): it does "
          "not read the instruction"),
    Probe("repeat", "the same inputs twice", "the same scores", "score",
          "answers the same input differently (mean difference {mean}): it samples; score with temperature 0, or "
          "average several samples"),
)


def low_threshold(scale: Sequence[float]) -> float:
    low, high = float(scale[0]), float(scale[1])
    return low + LOW_SHARE * (high - low)


def repeat_threshold(scale: Sequence[float]) -> float:
    return REPEAT_SHARE * (float(scale[1]) - float(scale[0]))


def view_value(fields: dict, view: str) -> tuple[float | None, str]:
    """The number a probe reads from one item's score fields, and its name: ``SC`` / ``PQ`` when the
    rubric gives them (semantics / quality), else the item's score. None for a failed item."""
    if fields.get("score") is None:
        return None, "score"
    subs = fields.get("sub_scores") or {}
    name = {"semantics": SEMANTICS, "quality": QUALITY}.get(view)
    value = subs.get(name) if name else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), name
    return float(fields["score"]), "score"


def _mean(values: list) -> float | None:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None


MAX_SIDE = 1024  # blank and noise images larger than this are made smaller (judges resize far below it)


def probe_size(size: tuple[int, int]) -> tuple[int, int]:
    """The source's size, scaled down (aspect kept) to at most ``MAX_SIDE`` pixels on its longer side."""
    width, height = size
    scale = min(1.0, MAX_SIDE / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def blank(size: tuple[int, int], value: int) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def noise(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Uniform random RGB pixels of ``size`` from ``rng`` (seeded: the same probe every time)."""
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def wrong_partners(items: list) -> list[int | None]:
    """For each item, the index of another item whose instruction it is given: the next one (cyclically)
    of another category with a different instruction, else the next with a different instruction."""
    out = []
    n = len(items)
    for i, item in enumerate(items):
        order = [(i + k) % n for k in range(1, n)]
        other = [j for j in order if items[j].instruction != item.instruction]
        cross = [j for j in other if items[j].category != item.category]
        out.append((cross or other or [None])[0])
    return out


def _entry(probe: Probe, item_ids: list[str], fields: list[dict], threshold: float, scale) -> dict:
    values = [view_value(f, probe.view) for f in fields]
    scores = [v for v, _ in values]
    mean = _mean(scores)
    errors = [f.get("error") for f in fields if f.get("score") is None and f.get("error")]
    entry = {"name": probe.name, "shows": probe.shows, "expect": probe.expect,
             "read": sorted({name for v, name in values if v is not None}) or [values[0][1] if values else "score"],
             "n": len(scores), "n_failed": sum(1 for s in scores if s is None), "mean": mean,
             "threshold": threshold, "rule": f"mean below {threshold:g} ({LOW_SHARE:.0%} of the "
                                              f"{scale[0]:g}-{scale[1]:g} scale)",
             "passed": None if mean is None else mean < threshold, "skipped": None,
             "scores": [{"item_id": i, "score": s} for i, s in zip(item_ids, scores)]}
    if mean is None:
        entry["passed"] = False
        entry["why"] = "the judge scored none of them" + (f" (first error: {errors[0]})" if errors else "")
    return entry


def _skipped(probe: Probe, reason: str) -> dict:
    return {"name": probe.name, "shows": probe.shows, "expect": probe.expect, "read": [], "n": 0, "n_failed": 0,
            "mean": None, "threshold": None, "rule": None, "passed": None, "skipped": reason, "scores": []}


def run_probes(score: ScoreFn, items: list, edits: dict[str, Path] | None, scale: Sequence[float], *,
               no_edits_reason: str | None = None, sizes: dict[str, tuple[int, int]] | None = None,
               rubric: str = "simple") -> dict:
    """Score every probe of ``items`` (valid benchmark items) with ``score`` and check each one.

    ``edits``: item id -> an edited image of the run's first editor (None or empty: ``wrong_instruction``
    is skipped with ``no_edits_reason``); ``sizes``: item id -> the source's (width, height), read from
    the files when not given; ``rubric``: its name, for the verdict's sentence. Returns ``{"scale", "n_items",
    "reference", "probes", "verdict"}``.
    """
    from ..images import image_size

    scale = (float(scale[0]), float(scale[1]))
    ids = [item.id for item in items]
    sources = [item.image for item in items]
    instructions = [item.instruction for item in items]
    sizes = {k: probe_size(v) for k, v in (sizes or {item.id: image_size(item.image) for item in items}).items()}
    low, same = low_threshold(scale), repeat_threshold(scale)
    by_name = {p.name: p for p in PROBES}
    results: dict[str, dict] = {}

    edited = [i for i, item in enumerate(items) if edits and item.id in edits]
    reference = None
    ref_fields: list[dict] = []
    if edited:  # the real edits with their own instructions: the context of the semantics probes, repeat's first pass
        ref_fields = score([edits[ids[i]] for i in edited], [instructions[i] for i in edited],
                           [sources[i] for i in edited])
        reference = {"shows": "the first editor's edits with their own instructions", "n": len(edited),
                     "semantics": _mean([view_value(f, "semantics")[0] for f in ref_fields]),
                     "quality": _mean([view_value(f, "quality")[0] for f in ref_fields]),
                     "score": _mean([f.get("score") for f in ref_fields])}

    unchanged = score(sources, instructions, sources)
    results["unchanged"] = _entry(by_name["unchanged"], ids, unchanged, low, scale)
    rng = random.Random(NOISE_SEED)
    made = {"black": [blank(sizes[i], 0) for i in ids], "white": [blank(sizes[i], 255) for i in ids],
            "noise": [noise(sizes[i], rng) for i in ids]}
    for name, images in made.items():
        results[name] = _entry(by_name[name], ids, score(images, instructions, sources), low, scale)

    partners = wrong_partners([items[i] for i in edited]) if edited else []
    pairs = [(i, edited[j]) for i, j in zip(edited, partners) if j is not None]
    if not edited:
        results["wrong_instruction"] = _skipped(by_name["wrong_instruction"], no_edits_reason or "no edits")
    elif not pairs:
        results["wrong_instruction"] = _skipped(by_name["wrong_instruction"],
                                                "no two edited items have different instructions")
    else:
        fields = score([edits[ids[i]] for i, _ in pairs], [instructions[j] for _, j in pairs],
                       [sources[i] for i, _ in pairs])
        results["wrong_instruction"] = _entry(by_name["wrong_instruction"], [ids[i] for i, _ in pairs], fields,
                                              low, scale)
        for row, (_, j) in zip(results["wrong_instruction"]["scores"], pairs):
            row["instruction_of"] = ids[j]

    results["repeat"] = _repeat(by_name["repeat"], score, ids, edited, edits, sources, instructions,
                                ref_fields if edited else unchanged, same, scale)
    probes = [results[p.name] for p in PROBES]
    result = {"rubric": rubric, "scale": list(scale), "n_items": len(items), "reference": reference,
              "probes": probes, "verdict": verdict(probes, reference)}
    result["verdict"]["text"] = verdict_text(result, rubric)
    return result


def _repeat(probe: Probe, score: ScoreFn, ids, edited, edits, sources, instructions, first: list[dict],
            same: float, scale) -> dict:
    if edited:
        rows = edited
        again = score([edits[ids[i]] for i in rows], [instructions[i] for i in rows], [sources[i] for i in rows])
    else:  # no edits: the sources, twice (``first``: the unchanged probe's scores)
        rows = list(range(len(ids)))
        again = score(sources, instructions, sources)
    diffs = [abs(a["score"] - b["score"]) if a.get("score") is not None and b.get("score") is not None else None
             for a, b in zip(first, again)]
    mean = _mean(diffs)
    entry = {"name": probe.name, "shows": probe.shows + (" (the first editor's edits)" if edited else " (the sources)"),
             "expect": probe.expect, "read": ["score"], "n": len(rows), "n_failed": sum(1 for d in diffs if d is None),
             "mean": mean, "threshold": same,
             "rule": f"mean absolute difference at most {same:g} ({REPEAT_SHARE:.0%} of the {scale[0]:g}-{scale[1]:g} "
                     "scale)", "passed": mean is not None and mean <= same, "skipped": None,
             "n_different": sum(1 for d in diffs if d), "scores": [
                 {"item_id": ids[i], "score": a.get("score"), "again": b.get("score")}
                 for i, a, b in zip(rows, first, again)]}
    if mean is None:
        entry["why"] = "the judge scored none of them twice"
    return entry


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def verdict(probes: list[dict], reference: dict | None) -> dict:
    """``{"fit": bool | None, "failed": [names], "reasons": [...], "notes": [...]}``; ``fit`` is False when any
    probe failed, None when none could be checked. ``text`` is filled in by ``verdict_text``."""
    failed = [p for p in probes if p["passed"] is False]
    checked = [p for p in probes if p["passed"] is not None]
    templates = {p.name: p.failing for p in PROBES}
    reasons = []
    for p in failed:
        if p.get("why"):
            reasons.append(f"{p['name']}: {p['why']}")
            continue
        ref = reference.get("semantics") if reference else None
        reasons.append(templates[p["name"]].format(mean=_fmt(p["mean"]), ref=_fmt(ref) if ref is not None else
                                                   "not measured, no edits"))
    notes = []
    by = {p["name"]: p for p in probes}
    black, white = by.get("black"), by.get("white")
    if black and white and black["passed"] and white["passed"] is False:
        notes.append(f"black passes only because it is dark: white, as blank, scores {_fmt(white['mean'])} "
                     f"against black's {_fmt(black['mean'])}: the judge reads brightness, not quality")
    return {"fit": None if not checked else not failed, "failed": [p["name"] for p in failed],
            "reasons": reasons, "notes": notes}


def verdict_text(result: dict, rubric: str) -> str:
    """One plain sentence: "this judge is unfit for rubric X: it ...; it ..." or what passing means."""
    v = result["verdict"]
    if v["fit"] is None:
        return f"the probes could not be checked for rubric {rubric}"
    if v["fit"] is False:
        text = f"this judge is unfit for rubric {rubric}: it " + "; it ".join(v["reasons"])
        return text + "".join(f" (note: {n})" for n in v["notes"])
    skipped = [p["name"] for p in result["probes"] if p["skipped"]]
    return (f"this judge passes the probes for rubric {rubric} on {result['n_items']} items"
            + (f" ({', '.join(skipped)} skipped)" if skipped else "")
            + ": it is not shown unfit (probes find judges that cannot see; they do not measure agreement "
              "with people)")
