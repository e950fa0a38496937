"""How KRIS-Bench's scripts read the judge's answer texts, reproduced (scores 1-5 and the reasoning kept).

Two readers exist upstream and they differ, so both are reproduced as they are:

- ``metrics_common.py`` (also imported by ``metrics_view_change.py``): ``extract_score_and_reason``.
  For each reason field in turn, the first ``{...}`` without nested braces that mentions the score key
  is parsed as JSON; a score that is present and ``int()``-able is returned with that reason field's
  value (so the consistency reader, whose first field is ``reason``, keeps no reasoning when the answer
  says ``reasoning``). Otherwise the first of these matches wins, case-insensitive, reasoning None:
  ``<name> score``, an optional colon, a digit 1-5; ``d/5``; ``d out of 5``; any standalone digit 1-5.
- ``metrics_knowledge.py``: its own ``extract_*`` functions. The JSON block decides alone when it parses
  and the key holds a value that ``int()`` accepts (a JSON ``null`` gives None without the fallbacks);
  the fallbacks need a colon after ``<name> score``; the instruction/knowledge pair (``dual``) has no
  ``d/5`` nor bare-digit fallback. Reasoning comes from the first ``{...}`` mentioning ``reasoning``, or
  the text after ``reasoning:``.

A failed request is the empty string upstream (``evaluate_with_gpt`` returns ``""`` after its retries),
so ``None`` is read as ``""``: every score None. Scores are not clamped to 1-5 (a JSON ``7`` stays 7),
as upstream. Reproduced from mercurystraw/Kris_Bench ``metrics_common.py`` and ``metrics_knowledge.py``
(the versions that import ``utils.prompts`` and read ``ins_en``; same readers at commits 2114fec9 and
7f7a944b), in our own words.
"""

from __future__ import annotations

import json
import re

_ANY_DIGIT = [r"([1-5])\s*/\s*5", r"([1-5])\s+out\s+of\s+5", r"\b([1-5])\b"]


def _json_block(text: str, key: str) -> dict | None:
    """The first brace block without nested braces mentioning ``key``, parsed; None when absent or invalid."""
    found = re.search(r"\{[^{}]*" + re.escape(key) + r"[^{}]*\}", text, re.DOTALL)
    if not found:
        return None
    try:
        return json.loads(found.group(0))
    except Exception:  # upstream catches everything json.loads raises
        return None


# ------------------------------------------------------------------ metrics_common.py's reader


def common_reader(text: str | None, key: str, reason_fields: tuple[str, ...], label: str) -> tuple[int | None, str | None]:
    """``extract_score_and_reason(text, key, reason_fields, [<label> score pattern])`` of metrics_common.py."""
    text = text or ""
    for field in reason_fields:
        data = _json_block(text, key)
        if data is None:
            continue
        try:
            value = data.get(key)
            score = int(value) if value is not None else None
            reason = data.get(field)
        except Exception:  # int() of a string or a list: upstream moves on to the next field / the patterns
            continue
        if score is not None:
            return score, reason
    for pattern in [label + r"[_\s]*score\s*[:：]?\s*([1-5])"] + _ANY_DIGIT:
        found = re.search(pattern, text, re.IGNORECASE | re.DOTALL)
        if found:
            return int(found.group(1)), None
    return None, None


def common_consistency(text):
    return common_reader(text, "consistency_score", ("reason", "reasoning"), "consistency")


def common_instruction(text):
    return common_reader(text, "instruction_score", ("reasoning", "reason"), "instruction")


def common_quality(text):
    return common_reader(text, "quality_score", ("reasoning", "reason"), "quality")


# ------------------------------------------------------------------ metrics_knowledge.py's readers


def _int_or_none(data: dict, key: str):
    """``int(data.get(key, 0)) if data.get(key) is not None else None``: raises as upstream's does."""
    return int(data.get(key, 0)) if data.get(key) is not None else None


def knowledge_single(text: str | None, label: str) -> int | None:
    """``extract_consistency_score`` / ``extract_quality_score`` of metrics_knowledge.py (label: the key's stem)."""
    text = text or ""
    key = f"{label}_score"
    data = _json_block(text, key)
    if data is not None:
        try:
            return _int_or_none(data, key)
        except Exception:
            pass  # upstream logs and falls through to the patterns
    for pattern in [label + r"[_\s]*score\s*[:：]\s*([1-5])"] + _ANY_DIGIT[:2]:
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            return int(found.group(1))
    digits = re.findall(r"\b([1-5])\b", text)
    return int(digits[0]) if digits else None


def knowledge_reasoning(text: str | None) -> str | None:
    """``extract_consistency_reasoning`` / ``extract_quality_reasoning`` of metrics_knowledge.py."""
    text = text or ""
    data = _json_block(text, "reasoning")
    if data is not None:
        return data.get("reasoning")
    found = re.search(r"reasoning\s*[:：]\s*(.+)", text, re.IGNORECASE | re.DOTALL)
    return found.group(1).strip() if found else None


def knowledge_dual(text: str | None) -> dict:
    """``extract_dual_scores`` of metrics_knowledge.py: instruction and knowledge scores and reasonings."""
    text = text or ""
    data = _json_block(text, "instruction_score")
    if data is not None:
        try:
            return {"instruction_score": _int_or_none(data, "instruction_score"),
                    "knowledge_score": _int_or_none(data, "knowledge_score"),
                    "instruction_reasoning": data.get("instruction_reasoning"),
                    "knowledge_reasoning": data.get("knowledge_reasoning")}
        except Exception:
            pass  # upstream falls back to the patterns below

    def first(pattern: str, flags: int) -> str | None:
        found = re.search(pattern, text, flags)
        return found.group(1) if found else None

    instruction = first(r"instruction[_\s]*score\s*[:：]\s*([1-5])", re.IGNORECASE)
    knowledge = first(r"knowledge[_\s]*score\s*[:：]\s*([1-5])", re.IGNORECASE)
    why_instruction = first(r"instruction_reasoning\s*[:：]\s*(.+?)(?=knowledge_reasoning|$)", re.DOTALL | re.IGNORECASE)
    why_knowledge = first(r"knowledge_reasoning\s*[:：]\s*(.+)", re.DOTALL | re.IGNORECASE)
    return {"instruction_score": int(instruction) if instruction else None,
            "knowledge_score": int(knowledge) if knowledge else None,
            "instruction_reasoning": why_instruction.strip() if why_instruction else None,
            "knowledge_reasoning": why_knowledge.strip() if why_knowledge else None}
