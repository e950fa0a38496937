"""Scoring a chunk of items with a benchmark protocol, through the one judge contract (``batch_evaluate``).

    fields = score_protocol_items(model, protocol, items, edited_paths, item_ids=ids)

Every item's ``asks`` are collected, grouped by ask name and by how many images are shown before the
last one (``base.shown_before``: a group's ``original_images`` is None, or one image per entry, or a
tuple per entry, shown in order), and each group goes to the judge in one ``batch_evaluate`` call (so
the transformers judge batches them, vLLM and an API run them concurrently), the groups ordered by ask
name (a name not seen before goes right after the name asked before it in its item: each item's
requests go out in the order its protocol lists them, the order in which the upstream scripts send
them one after another), with a parser that accepts any text: the protocol, not the
judge, reads the answers. Each item then gets its answers (the text per ask name; None where that
request failed) through ``item_result``. What comes back per item are the score fields the score stage
records, as for a rubric (``reward.judge.judge_items``): score, sub_scores, raw_output(s), error,
fallback, failed_stage. An item whose asks cannot be made (``ItemProblem``), whose request failed or
whose answer the protocol cannot read is a failure record; nothing else is lost.
"""

from __future__ import annotations

import math

from .base import Ask, ItemProblem, ItemResult, shown_before


class AnyText:
    """The ``parse=`` given to the judge: every answer is accepted (the protocol reads the text itself).

    It has no ``decided``: the transformers judge then generates each answer to its end (no early stop)."""

    def __call__(self, text: str) -> float:
        return 0.0


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def score_protocol_items(model, protocol, items: list, edited: list, item_ids: list[str] | None = None) -> list[dict]:
    """One dict of score fields per (item, edited image) pair, in input order (see the module's docstring)."""
    n = len(items)
    ids = list(item_ids) if item_ids is not None else [str(item.id) for item in items]
    problems: list[list[str]] = [[] for _ in range(n)]
    answers: list[dict[str, str | None]] = [{} for _ in range(n)]
    raws: list[dict[str, str | None]] = [{} for _ in range(n)]
    fallback = [False] * n
    asked = [False] * n
    groups: dict[tuple[str, int], list[tuple[int, Ask]]] = {}
    names: list[str] = []  # the ask names, in the order their groups go out
    for i, (item, image) in enumerate(zip(items, edited)):
        try:
            asks = protocol.asks(item, image)
        except ItemProblem as exc:
            problems[i].append(str(exc))
            continue
        asked[i] = True
        previous = -1
        for ask in asks:
            if ask.name not in names:
                names.insert(previous + 1, ask.name)
            previous = names.index(ask.name)
            groups.setdefault((ask.name, len(shown_before(ask.first_image))), []).append((i, ask))
    for (name, before), entries in sorted(groups.items(), key=lambda group: names.index(group[0][0])):
        results = model.batch_evaluate(
            [ask.image for _, ask in entries],
            system_prompts=[ask.system_prompt for _, ask in entries],
            user_prompts=[ask.user_prompt for _, ask in entries],
            original_images=_originals([ask.first_image for _, ask in entries], before),
            item_ids=[ids[i] for i, _ in entries], parse=AnyText())
        for (i, _), result in zip(entries, results):
            raws[i][name] = result.raw_output
            fallback[i] = fallback[i] or result.fallback
            if result.error is None:
                answers[i][name] = result.answers()[0]
            else:
                answers[i][name] = None
                problems[i].append(f"{name}: {result.error}")
    return [_fields(protocol, item, answers[i], raws[i], problems[i], fallback[i]) if asked[i]
            else _failure(problems[i], raws[i], fallback[i]) for i, item in enumerate(items)]


def _originals(firsts: list, before: int) -> list | None:
    """A group's ``original_images``: None when nothing is shown before, the single images, or tuples."""
    if before == 0:
        return None
    shown = [shown_before(first) for first in firsts]
    return [images[0] for images in shown] if before == 1 else shown


def _fields(protocol, item, answers: dict, raws: dict, problems: list[str], fallback: bool) -> dict:
    """The item's fields from ``item_result``; a protocol that raises on an answer fails that item only."""
    try:
        result = protocol.item_result(item, answers)
        if not isinstance(result, ItemResult):
            raise TypeError(f"item_result returned {type(result).__name__}, not ItemResult")
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        return _failure(problems + [f"reading the answers: {type(exc).__name__}: {exc}"], raws, fallback)
    score = _number(result.score)
    if result.score is not None and score is None:
        return _failure(problems + [f"item_result gave the score {result.score!r}, not a finite number"], raws,
                        fallback)
    sub_scores = {str(k): _number(v) for k, v in (result.sub_scores or {}).items()}
    if score is None:
        reasons = problems + ([result.error] if result.error else []) or ["no score"]
        return _failure(reasons, raws, fallback, sub_scores)
    fields = _base(raws, fallback, sub_scores)
    fields["score"] = score
    if problems:  # the protocol scored the item from the answers it had: say which requests failed
        fields["partial_errors"] = "; ".join(problems)
    return fields


def _base(raws: dict, fallback: bool, sub_scores: dict | None = None) -> dict:
    return {"score": None, "raw_output": "\n\n".join(f"[{k}] {v}" for k, v in raws.items()) or None,
            "error": None, "fallback": fallback, "failed_stage": None, "sub_scores": sub_scores or {},
            "raw_outputs": dict(raws)}


def _failure(reasons: list[str], raws: dict, fallback: bool, sub_scores: dict | None = None) -> dict:
    fields = _base(raws, fallback, sub_scores)
    fields.update(error="; ".join(reasons), failed_stage="score")
    return fields
