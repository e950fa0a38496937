"""ImgEdit-Bench Basic's own scoring, reproduced from a local checkout of PKU-YuanGroup/ImgEdit.

    reward_model:
      type: openai
      params:
        model: gpt-4o
        protocol: {name: imgedit, dir: /data/ImgEdit}     # the repository root, or Benchmark/Basic

Read from PKU-YuanGroup/ImgEdit at commit 547185d12c08267a862b94248576e1746e479937, folder
``Benchmark/Basic``:

- ``basic_bench.py`` (the judge request): the prompt for the item's ``edit_type`` from ``prompts.json``,
  with ``<edit_prompt>`` replaced by the item's instruction, in one user message (no system message)
  holding the text first, then the original image, then the edited image ``<key>.png``; model
  ``gpt-4o``, no other request setting (so the API's defaults: temperature, max tokens). Every edit
  type, ``extract`` included, is sent both images.
- ``step1_get_avgscore.py`` (an item's score): every line of the answer, stripped and split on ``": "``,
  that gives exactly two parts whose second part is all digits (``str.isdigit``) contributes
  ``int(second part)``; the item's score is the mean of those integers rounded to 2 decimals, and an
  answer without such a line gives no score (the item is left out of every mean).
- ``step2_typescore.py`` (per edit type): ``round(mean of the item scores of that type, 2)``; a type
  without a scored item is absent.
- The overall figure: ImgEdit's leaderboard (README.md, ``assets/leaderboard.png``) says "Overall is
  calculated by averaging all scores across tasks": the mean of the edit types' scores, rounded to 2
  here as the table shows. No script computes it.

``prompts.json`` is parsed as JSON where the user's checkout has it; nothing of it is copied here. Its
SHA-256 is the protocol's identity (the scoring rule above is this module's, named by ``version``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic
from .base import Ask, ItemProblem, ItemResult, ProtocolError, file_digest

PROMPTS = "Benchmark/Basic/prompts.json"
PLACEHOLDER = "<edit_prompt>"
ASK = "score"  # the one request per item


def prompts_path(folder: Path) -> Path:
    """``prompts.json`` under the repository root or under its ``Benchmark/Basic`` folder."""
    for candidate in (folder / PROMPTS, folder / "prompts.json"):
        if candidate.is_file():
            return candidate
    raise ProtocolError(f"{folder} has no {PROMPTS} (expected a checkout of PKU-YuanGroup/ImgEdit, or its "
                        "Benchmark/Basic folder)")


def read_prompts(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in data.items()):
        raise ProtocolError(f"{path}: expected a JSON object of edit type -> prompt text")
    return data


def line_scores(answer: str) -> list[int]:
    """The integers step1_get_avgscore.py reads from an answer (its ``extract_scores_and_average``).

    A line whose digits ``str.isdigit`` accepts but ``int`` does not (a superscript digit) stops the
    upstream script with ValueError; here it is a ``ValueError`` the caller records for the item."""
    scores = []
    for line in answer.splitlines():
        parts = line.strip().split(": ")
        if len(parts) == 2 and parts[1].isdigit():
            try:
                scores.append(int(parts[1]))
            except ValueError:
                raise ValueError(f"line {line.strip()[:80]!r}: {parts[1]!r} passes str.isdigit but is no "
                                 "integer (ImgEdit's step1 stops with ValueError on it)") from None
    return scores


def item_score(answer: str) -> float | None:
    """step1's score of an answer: the mean of ``line_scores`` rounded to 2, or None without any."""
    scores = line_scores(answer)
    return round(sum(scores) / len(scores), 2) if scores else None


def type_scores(scores: dict[str, float], types: dict[str, str]) -> dict[str, float]:
    """step2_typescore.py's ``compute_edit_type_averages``: per edit type, round(mean of its scores, 2)."""
    by_type: dict[str, list[float]] = {}
    for key, score in scores.items():
        if types.get(key) is not None:
            by_type.setdefault(types[key], []).append(score)
    return {t: round(sum(v) / len(v), 2) for t, v in by_type.items() if v}


def overall(by_type: dict[str, float]) -> float | None:
    """The leaderboard's Overall: the mean of the edit types' scores, rounded to 2."""
    return round(sum(by_type.values()) / len(by_type), 2) if by_type else None


class ImgEditBasic:
    """The ``imgedit`` protocol (see the module's docstring)."""

    name = "imgedit"
    version = "basic@547185d"  # basic_bench.py, step1, step2 and the leaderboard's Overall as of that commit
    score_range = (1.0, 5.0)  # the prompts ask for 1-5 on each line

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = prompts_path(self.folder)
        self.prompts = read_prompts(self.path)
        self._digest = file_digest(self.path)

    @property
    def categories(self) -> list[str]:
        """The edit types it has a prompt for (an item of another type is a failure record)."""
        return list(self.prompts)

    def identity(self) -> dict:
        return {"protocol": self.name, "version": self.version, "files": {PROMPTS: self._digest}}

    def asks(self, item, edited: Path) -> list[Ask]:
        prompt = self.prompts.get(item.category)
        if prompt is None:  # basic_bench.py: prompts[edit_type] raises KeyError, the item gets no answer
            raise ItemProblem(f"edit type {item.category!r} has no prompt in {self.path.name} "
                              f"(it has {sorted(self.prompts)})")
        return [Ask(ASK, prompt.replace(PLACEHOLDER, item.instruction), image=edited, first_image=item.image)]

    def item_result(self, item, answers: dict[str, str | None]) -> ItemResult:
        answer = answers.get(ASK)
        if answer is None:
            return ItemResult(None, error="no answer from the judge")
        try:
            score = item_score(answer)
        except ValueError as exc:
            return ItemResult(None, error=str(exc))
        if score is None:
            return ItemResult(None, error="the answer has no 'Name: N' line (ImgEdit's step1 leaves the item out)")
        return ItemResult(score)

    def summary(self, rows: list[dict]) -> dict:
        scores = {r["item_id"]: r["score"] for r in rows if r.get("score") is not None}
        types = {r["item_id"]: r["category"] for r in rows}
        by_type = type_scores(scores, types)
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            entry = counts.setdefault(r["category"], {"n": 0, "n_scored": 0})
            entry["n"] += 1
            entry["n_scored"] += r.get("score") is not None
        return {"types": {t: {"score": by_type.get(t), **c, "n_failed": c["n"] - c["n_scored"]}
                          for t, c in counts.items()},
                "overall": overall(by_type), "n": len(rows), "n_scored": len(scores),
                "n_failed": len(rows) - len(scores),
                "rules": "item: step1_get_avgscore.py; type: step2_typescore.py; overall: the mean of the type "
                         "scores (ImgEdit's leaderboard), each rounded to 2; failed items are left out"}

    def export(self, rows: list[dict], folder: Path) -> list[Path]:
        """``result.json`` (key -> answer text, what basic_bench.py writes and step1 reads),
        ``average_score.json`` (step1's output), ``typescore.json`` (step2's output) and
        ``omitted_items.json`` (items without an answer text: basic_bench.py would write an error object
        there, which step1 cannot read)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        results, omitted = {}, {}
        for r in rows:
            answer = (r.get("answers") or {}).get(ASK)
            if isinstance(answer, str):
                results[r["item_id"]] = answer
            else:
                omitted[r["item_id"]] = r.get("error") or "no answer"
        averages = {k: s for k, s in ((k, _safe_score(a)) for k, a in results.items()) if s is not None}
        typescore = type_scores(averages, {r["item_id"]: r["category"] for r in rows})
        files = {"result.json": (results, 4), "average_score.json": (averages, 2), "typescore.json": (typescore, 2),
                 "omitted_items.json": (omitted, 2)}
        return [write_atomic(folder / name, json.dumps(data, indent=indent) + "\n")
                for name, (data, indent) in files.items()]


def _safe_score(answer: str) -> float | None:
    try:
        return item_score(answer)
    except ValueError:
        return None
