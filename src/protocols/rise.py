"""RISEBench's own scoring (``gpt_eval.py``), reproduced from a local checkout of PhoenixZ810/RISEBench.

    reward_model:
      type: openai
      params:
        model: gpt-4.1-2025-04-14       # temperature 0, max_new_tokens 4096, image_format jpeg
        protocol: {name: rise, dir: /data/RISEBench}     # the repository root

What is asked, and with which images, is ``rise_prompts``'s part. Reproduced here from ``gpt_eval.py``
at PhoenixZ810/RISEBench 5f226519b25c005bb32fb83864bbd1845ab85c23 (the rule of ce8cba3, 2026-04-13):

- ``extract`` (``final_score_numbers``): the integers of the first "Final Score" line that has any
  (case-insensitive, stars and a colon allowed, the digits, spaces, stars and commas after it), else of
  the first "Final Scores" line that has any; none: the answer is unreadable.
- ``main`` (``judgement_scores``): an item whose answers are all readable gets the concatenated numbers;
  three numbers are ApprConsistency, Reasoning, VisualPlausibility (a consistency-free item has no
  ApprConsistency); two numbers (a logical item's 0/1 answers) become ``4 * min(n, 1) + 1`` each. An
  unreadable answer, or a request that failed (the script stores a failure text, unreadable too), leaves
  all three empty ("failed" in its match_log).
- ``calculate_score``: 0.3 C + 0.5 R + 0.2 VP (0.2 VP + 0.8 R where its ``consistency_free`` test holds),
  0.3 C + 0.7 R for logical items, halved with a floor of 1 when R is 1; empty where a part is empty.
- ``calculate_completion`` (the April 2026 rule): 1 when every dimension the item is judged on is 5
  (a consistency-free item: R and VP), else 0 (an unreadable item counts 0).
- The summary: means (empty values left out) of score and completion overall, per category and per
  subtask (``subtask_dic``'s order, "Temp-..." names), of each dimension overall and per category; each
  with its percentage ``25 * (s - 1)``. The leaderboard's "Overall (%)" is the completion (Accuracy).

An item's ``score`` is its weighted score (1 to 5); ``sub_scores`` hold the three dimensions and
``complete``. Where the upstream script itself would stop (a record it cannot judge, an answer with more
numbers than its lists expect, an absent ``subtask`` column), this module says so instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from ..files import write_atomic
from ..images import ImageLoadError
from . import rise_prompts as rp
from .base import Ask, ItemProblem, ItemResult, ProtocolError

_SCORE = re.compile(r"final score\*{0,2}:?\s*([\d\s*,]*)", re.IGNORECASE)
_SCORES = re.compile(r"final scores\*{0,2}:?\s*([\d\s*,]*)", re.IGNORECASE)
JUDGE_KEYS = {"consistency": "judge1", "reasoning": "judge2", "quality": "judge3"}
DIMENSIONS = ("ApprConsistency", "Reasoning", "VisualPlausibility")
SUMMARY_CATEGORIES = {"Temporal": "temporal_reasoning", "Causal": "causal_reasoning",
                      "Spatial": "spatial_reasoning", "Logical": "logical_reasoning"}
SCORE_COLUMNS = ["-", "Score-Origin", "Score-Percentage", "Accuracy"]
NAN = float("nan")


def final_score_numbers(answer: str) -> list[int] | None:
    """``extract``: the numbers read from an answer; None or [] when it has none (both unreadable)."""
    for pattern in (_SCORE, _SCORES):
        groups = pattern.findall(answer)
        for group in groups:
            digits = re.findall(r"\d+", group)
            if digits:
                return [int(d) for d in digits]
        if pattern is _SCORES:
            return [] if groups else None
    return None  # not reached


def judgement_scores(numbers: list[int]) -> dict[str, float] | None:
    """``main``'s reading of an item's concatenated numbers: {dimension: value or NaN}, or None where the
    script's lists fall out of step (it then stops at the column assignment)."""
    if len(numbers) == 3:
        return {d: NAN if n is None else float(n) for d, n in zip(DIMENSIONS, numbers)}
    if len(numbers) == 2:
        return {"ApprConsistency": 4.0 * min(numbers[0], 1) + 1, "Reasoning": 4.0 * min(numbers[1], 1) + 1,
                "VisualPlausibility": NAN}
    return None


def weighted_score(category: str, dims: dict[str, float], free_for_score: bool) -> float:
    """``calculate_score`` (NaN propagates as in pandas)."""
    c, r, vp = dims["ApprConsistency"], dims["Reasoning"], dims["VisualPlausibility"]
    if category in rp.THREE:
        score = 0.2 * vp + 0.8 * r if free_for_score else 0.3 * c + 0.5 * r + 0.2 * vp
    else:
        score = 0.3 * c + 0.7 * r
    if r == 1:
        score = score * 0.5
        score = 1 if score < 1 else score
    return score


def completion(category: str, dims: dict[str, float], free: bool) -> int:
    """``calculate_completion`` as of ce8cba3 (2026-04-13)."""
    needed = ("Reasoning", "VisualPlausibility") if free else DIMENSIONS
    if category == rp.LOGICAL:
        needed = ("ApprConsistency", "Reasoning")
    return int(all(dims[d] == 5 for d in needed))


def _mean(values) -> float:
    """pandas' mean (empty values left out), with an exactly rounded sum: pandas' own summation order
    (numpy's pairwise sum, Kahan in groupby) can differ from it in the last bits."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else NAN


def _triple(value: float, accuracy: float | None) -> list:
    return [value, 25 * (value - 1), accuracy]


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


class RiseProtocol:
    """The ``rise`` protocol (see the module's docstring and ``rise_prompts``)."""

    name = "rise"
    version = "gpt_eval.py@ce8cba3 (2026-04-13)"  # the completion rule of April 2026
    score_range = (1.0, 5.0)

    def __init__(self, folder, data: str | None = None) -> None:
        """``folder``: the RISEBench checkout; ``data``: another ``data_total.json`` (RISEBench-360's; relative
        to ``folder``), image paths relative to its folder (default: the checkout's ``data/data_total.json``)."""
        self.folder = Path(folder).expanduser()
        paths = [self.folder / rp.UTILS, self.folder / rp.SCRIPT,
                 self.folder / Path(data).expanduser() if data else self.folder / rp.DATA]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ProtocolError(f"{self.folder} is not a RISEBench checkout: missing {missing} (expected a clone of "
                                "https://github.com/PhoenixZ810/RISEBench)")
        self.prompts = rp.read_prompts(paths[0])
        script = rp.read_script(paths[1])
        self.subtasks, self.request = script["subtasks"], script["request"]
        self.data_path = paths[2]
        self.records, self.order, self.columns = rp.read_records(self.data_path)
        bad = {k: p for k, p in ((k, rp.record_problems(r)) for k, r in self.records.items()) if p}
        if bad:
            listed = "; ".join(f"{k}: {', '.join(p)}" for k, p in list(bad.items())[:5])
            raise ProtocolError(f"{self.data_path}: {len(bad)} records RISEBench's gpt_eval.py cannot judge "
                                f"(it would stop on them): {listed}")
        self._files = rp.digests(self.folder, paths)

    # ------------------------------------------------------------------ contract

    def identity(self) -> dict:
        return {"protocol": self.name, "version": self.version, "files": dict(self._files)}

    def judge_settings(self) -> dict:
        """The request settings of ``gpt_generate`` (model, temperature, max_tokens, image_size)."""
        return dict(self.request)

    def record(self, item_id) -> dict:
        try:
            return self.records[str(item_id)]
        except KeyError:
            raise ProtocolError(f"item {item_id!r} is not in {self.data_path}: point the protocol's data at the "
                                "benchmark's data_total.json") from None

    def consistency_free(self, record: dict) -> tuple[bool, bool]:
        """(``eval_vanilla`` and ``calculate_completion``'s test, ``calculate_score``'s test): the latter holds
        for every record without the field once any record has it (a missing value is NaN, and NaN is true)."""
        if "consistency_free" not in self.columns:
            return False, False
        free = rp.is_set(record, "consistency_free")
        return free, (not free) or bool(record["consistency_free"])

    def asks(self, item, edited: Path) -> list[Ask]:
        record = self.record(item.id)
        stored = record.get("judge") or {}
        base = self.data_path.parent
        paths = {rp.SOURCE: base / record["image"], rp.EDIT: edited}  # a path, or an open PIL image
        if rp.is_set(record, "reference_img"):
            paths[rp.REFERENCE] = base / record["reference_img"]
        wanted = [r for r in rp.plan(record, self.columns) if JUDGE_KEYS[r.name] not in stored
                  and not (r.name == "consistency" and self.consistency_free(record)[0])]
        size = self.request["image_size"]
        try:
            images = {role: rp.upstream_image(paths[role], size) for role in {i for r in wanted for i in r.images}}
        except ImageLoadError as exc:
            raise ItemProblem(str(exc)) from None
        return [Ask(r.name, rp.prompt_text(self.prompts, r.prompt, record), image=images[rp.EDIT],
                    first_image=images[r.images[0]] if len(r.images) == 2 else None) for r in wanted]

    def item_result(self, item, answers: dict[str, str | None]) -> ItemResult:
        return self._read(self.record(item.id), answers)[0]

    def _texts(self, record: dict, answers: dict) -> dict[str, str | None]:
        """judge1..judge3 as the script holds them: stored answers first, None for a consistency-free judge1."""
        stored = record.get("judge") or {}
        names = [r.name for r in rp.plan(record, self.columns)]
        texts = {JUDGE_KEYS[n]: stored.get(JUDGE_KEYS[n], answers.get(n)) for n in names}
        if self.consistency_free(record)[0]:
            texts["judge1"] = None
        return texts

    def _read(self, record: dict, answers: dict) -> tuple[ItemResult, bool]:
        """The item's figures, and whether the script's match_log says 'succeed' (every answer read)."""
        texts = self._texts(record, answers)
        free, free_for_score = self.consistency_free(record)
        numbers, unreadable = [], []
        for key, text in texts.items():
            if key == "judge1" and free:  # the script's [None] + score2 + score3
                numbers.append(None)
                continue
            found = final_score_numbers(text) if isinstance(text, str) else None
            if not found:
                unreadable.append(f"{key} ({'no answer' if text is None else 'no Final Score number'})")
            numbers += found or []
        dims = None if unreadable else judgement_scores(numbers)
        read = dims if dims is not None else dict.fromkeys(DIMENSIONS, NAN)  # the script's 'failed' row
        score = _clean(weighted_score(record["category"], read, free_for_score))
        subs = {d: _clean(v) for d, v in read.items()}
        subs["complete"] = completion(record["category"], read, free)
        if unreadable:
            return ItemResult(None, subs, error="unreadable: " + ", ".join(unreadable)), False
        if dims is None:
            return ItemResult(None, subs, error=f"{len(numbers)} numbers read {numbers}: RISEBench's script stops "
                                                "here (its score lists fall out of step)"), False
        return ItemResult(score, subs, error=None if score is not None else "the weighted score is empty"), True

    # ------------------------------------------------------------------ the summary and the files

    def _table(self, rows: list[dict]) -> list[dict]:
        """One entry per row, in data_total.json's order: the record, the texts and the figures. The figures
        are the row's own (``item_result``'s, as the score stage recorded them); a row without them (no
        edit, or an item whose asks could not be made) is read from its answers: an unreadable item, as
        the script's 'failed' rows (no score, completion 0)."""
        position = {k: i for i, k in enumerate(self.order)}
        out = []
        for row in sorted(rows, key=lambda r: position.get(str(r["item_id"]), len(position))):
            record = self.record(row["item_id"])
            answers = row.get("answers") if isinstance(row.get("answers"), dict) else {}
            subs = row.get("sub_scores") or {}
            if all(k in subs for k in DIMENSIONS + ("complete",)):
                score, matched = row.get("score"), subs["Reasoning"] is not None
            else:
                result, matched = self._read(record, answers)
                score, subs = result.score, result.sub_scores
            out.append({"record": record, "texts": self._texts(record, answers), "matched": matched,
                        "dims": {d: _nan(subs[d]) for d in DIMENSIONS}, "score": _nan(score),
                        "complete": int(subs["complete"])})
        return out

    def _figures(self, table: list[dict]) -> dict[str, list]:
        """The rows of ``{model}_judge.csv``: name -> [score, percentage, accuracy], in the script's order."""
        def part(entries):
            return (_mean(e["score"] for e in entries), _mean(e["complete"] for e in entries))

        def dim(entries, name):
            return _triple(_mean(e["dims"][name] for e in entries), None)

        by_category = {label: [e for e in table if e["record"]["category"] == cat]
                       for label, cat in SUMMARY_CATEGORIES.items()}
        figures = {"Overall": _triple(*part(table))}
        figures.update({label: _triple(*part(entries)) for label, entries in by_category.items()})
        figures["Overall_Reasoning"] = dim(table, "Reasoning")
        figures["Overall_ApprConsistency"] = dim(table, "ApprConsistency")
        figures["Overall_VisualPlausibility_total"] = dim(table, "VisualPlausibility")
        for label, entries in by_category.items():
            wanted = ("Reasoning", "ApprConsistency") + (("VisualPlausibility",) if label != "Logical" else ())
            for name in wanted:
                figures[f"{label}_{name.replace('ApprConsistency', 'Consistency').replace('VisualPlausibility', 'Quality')}"] = dim(entries, name)
        if "subtask" in self.columns:
            groups: dict = {}
            for e in table:
                if rp.is_set(e["record"], "subtask"):
                    groups.setdefault(e["record"]["subtask"], []).append(e)
            for prefix, names in self.subtasks.items():
                for name in names:
                    if name in groups:
                        figures[f"{prefix}-{name}"] = _triple(*part(groups[name]))
        return figures

    def summary(self, rows: list[dict]) -> dict:
        table = self._table(rows)
        figures = self._figures(table)
        seen = {str(r["item_id"]) for r in rows}
        missing = [k for k in self.order if k not in seen]
        notes = []
        if missing:
            notes.append(f"{len(missing)} of the {len(self.order)} items of {self.data_path.name} have no row: "
                         "RISEBench's script stops on a missing output image, so these figures are not its own")
        if "subtask" not in self.columns:
            notes.append("data_total.json has no subtask field: no per-subtask figures (RISEBench's script stops "
                         "at its groupby('subtask'))")
        clean = {k: [_clean(v) for v in values] for k, values in figures.items()}

        def part(label: str, entries: list[dict]) -> dict:
            score, percent, accuracy = clean[label]
            failed = sum(math.isnan(e["score"]) for e in entries)
            return {"score": None if accuracy is None else 100 * accuracy, "accuracy": accuracy,
                    "score_origin": score, "score_percent": percent, "n": len(entries),
                    "n_scored": len(entries) - failed, "n_failed": failed}

        overall = part("Overall", table)
        return {"rule": self.version, "overall": overall.pop("score"), **overall,
                "types": {cat: part(label, [e for e in table if e["record"]["category"] == cat])
                          for label, cat in SUMMARY_CATEGORIES.items()},
                "headline": "overall and each type's score: Accuracy (%), the share of items whose every judged "
                            "dimension is 5 (RISEBench's leaderboard figure; failed items count as not complete); "
                            "score_origin: the mean weighted score (1-5), score_percent: 25 * (score_origin - 1)",
                "n_in_data": len(self.order), "missing": missing, "figures": clean, "notes": notes}

    def export(self, rows: list[dict], folder: Path, model: str | None = None) -> list[Path]:
        """``{model}_judge.csv`` (the script's score file: one row per figure, columns ``-``,
        ``Score-Origin``, ``Score-Percentage``, ``Accuracy``) and ``{model}_judge_table.csv`` (its judge table,
        which it writes as ``{model}_judge.xlsx``: the records' fields, then Reasoning, ApprConsistency,
        VisualPlausibility, match_log, judge_cons, judge_reas, judge_qua, score, complete; every field
        quoted, as its ``dump`` writes a CSV). ``model`` defaults to the rows' editor."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = model or next((str(r["editor"]) for r in rows if r.get("editor")), "model")
        table = self._table(rows)
        scores = io.StringIO()
        writer = csv.writer(scores, lineterminator="\n")
        writer.writerow(SCORE_COLUMNS)
        for name, values in self._figures(table).items():
            writer.writerow([name] + [_cell(v) for v in values])
        judged = io.StringIO()
        writer = csv.writer(judged, quoting=csv.QUOTE_ALL, lineterminator="\n")
        extra = ["Reasoning", "ApprConsistency", "VisualPlausibility", "match_log", "judge_cons", "judge_reas",
                 "judge_qua", "score", "complete"]
        writer.writerow(self.columns + extra)
        for e in table:
            texts, dims = e["texts"], e["dims"]
            writer.writerow([_cell(e["record"].get(c)) for c in self.columns] + [
                _cell(dims["Reasoning"]), _cell(dims["ApprConsistency"]), _cell(dims["VisualPlausibility"]),
                "succeed" if e["matched"] else "failed",
                _cell(texts.get("judge1")), _cell(texts.get("judge2")), _cell(texts.get("judge3")),
                _cell(e["score"]), e["complete"]])
        return [write_atomic(folder / f"{model}_judge.csv", scores.getvalue()),
                write_atomic(folder / f"{model}_judge_table.csv", judged.getvalue())]


def _nan(value) -> float:
    return NAN if value is None else float(value)


def _cell(value) -> str:
    """A CSV field as pandas writes it: empty for None/NaN, floats by repr, mappings as JSON."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
