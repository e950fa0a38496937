"""Turn a judge's free-text answer into a score, or a clear reason why not.

Accepted, in order of precedence:
1. a JSON object with a ``score`` key, also inside prose or code fences: ``{"score": 7}``. The
   first such object is the answer and nothing after it is read, so an answer is decided the
   moment that object closes (which is where ``stop_early`` ends generation: see ``json_decided``);
2. a labelled final answer: ``Final score: 7``, ``Overall score is 7``;
3. a labelled score: ``Score: 7``, ``score = 7``;
4. a fraction of the configured maximum: ``7/10``, ``7 out of 10``;
5. a last line that is only a number (reasoning followed by the score).
Within levels 2-5, different values are a conflict and a failure. A value outside the range is a
failure. Nothing here ever invents a score.

Thinking checkpoints (Qwen3-VL-*-Thinking) reason inside ``<think>...</think>`` first:
``answer_text`` keeps what follows the first ``</think>``, and an answer whose ``<think>`` block
never closes has no score (the reasoning may quote numbers; they are never read as the score).
"""

from __future__ import annotations

import json
import re

_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_FINAL = re.compile(r"(?:final|overall)\s+(?:score|rating)\s*(?:is|:|=)?\s*\**\s*" + _NUMBER, re.I)
_LABELLED = re.compile(r"\b(?:score|rating)\b[\"']?\s*(?:is|:|=)\s*\**\s*" + _NUMBER, re.I)
_FRACTION = re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.I)
_LAST_LINE_NUMBER = re.compile(r"^[\s*#>]*" + _NUMBER + r"\s*\**\.?\s*$")


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class ScoreParseError(ValueError):
    """The answer holds no usable score; the message says why."""


def answer_text(text: str, opened: bool = False) -> str:
    """The part of a generated answer that holds the score: everything after the first ``</think>``.

    ``opened``: the chat template itself opened a ``<think>`` block (the generation starts inside
    it). An answer that opens one, or starts inside one, and never closes it has no answer part.
    """
    if text is None:
        raise ScoreParseError("empty answer")
    head, closed, rest = text.partition(THINK_CLOSE)
    if closed:
        return rest
    if opened or THINK_OPEN in text:
        raise ScoreParseError(f"the answer never closed its {THINK_OPEN} block (no {THINK_CLOSE}, so no answer "
                              f"after the reasoning): {_clip(text)!r}")
    return text


def _json_objects(text: str):
    """Every flat JSON object in ``text`` (prose, code fences and broken objects around them are skipped)."""
    for match in _JSON_OBJECT.finditer(text):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj


def _number(value) -> float | None:
    """A JSON value as a score: a number or a numeric string; booleans and anything else are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(_NUMBER, value.strip()):
        return float(value)
    return None


def _json_scores(text: str, key: str) -> list[float]:
    values = []
    for obj in _json_objects(text):
        for k, v in obj.items():
            if k.lower() == key and _number(v) is not None:
                values.append(_number(v))
    return values


def _one(values: list[float], what: str, text: str) -> float:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise ScoreParseError(f"conflicting scores {distinct} ({what}) in answer {_clip(text)!r}")
    return distinct[0]


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."


def parse_score(text: str, low: float = 0.0, high: float = 10.0, key: str = "score") -> float:
    """Return the score in ``text``; raise ScoreParseError when there is none, several, or it is out of range."""
    if text is None or not text.strip():
        raise ScoreParseError("empty answer")
    value = None
    json_values = _json_scores(text, key.lower())
    if json_values:
        value = json_values[0]  # the first object is the answer; what follows it is never read
    elif finals := _FINAL.findall(text):
        value = float(finals[-1])
    elif labelled := _LABELLED.findall(text):
        value = _one([float(v) for v in labelled], "labelled", text)
    else:
        fractions = [float(n) for n, d in _FRACTION.findall(text) if float(d) == float(high)]
        if fractions:
            value = _one(fractions, "fractions", text)
        else:
            lines = [line for line in text.strip().splitlines() if line.strip()]
            match = _LAST_LINE_NUMBER.match(lines[-1]) if lines else None
            if match:
                value = float(match.group(1))
    if value is None:
        raise ScoreParseError(f"no score found in answer {_clip(text)!r}")
    if not low <= value <= high:
        raise ScoreParseError(f"score {value:g} outside the range [{low:g}, {high:g}] in answer {_clip(text)!r}")
    return value


def json_decided(text: str, fields: list[str] | tuple[str, ...] = ("score",)) -> bool:
    """True once ``text`` holds the JSON object that decides its parse (``parse_score`` with
    ``fields[0]`` as the key for one field, ``parse_fields`` for several): the first object that
    gives every field. Appending text cannot change that object (a flat ``{...}`` is matched from
    its own braces only), so the parse of any longer answer is the parse of this one."""
    if len(fields) == 1:
        return bool(_json_scores(text, fields[0].lower()))
    return bool(_json_fields(text, list(fields)))


def _json_fields(text: str, fields: list[str]) -> list[dict[str, float]]:
    """Every JSON object in ``text`` that gives all ``fields`` (or a VIEScore-style ``"score": [a, b]`` list)."""
    found = []
    for obj in _json_objects(text.replace("\n", " ")):
        lowered = {str(k).lower(): v for k, v in obj.items()}
        values = {name: _number(lowered.get(name.lower())) for name in fields}
        values = {name: v for name, v in values.items() if v is not None}
        listed = lowered.get("score")
        if len(values) < len(fields) and isinstance(listed, list) and len(listed) == len(fields) \
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in listed):
            values = {name: float(v) for name, v in zip(fields, listed)}
        if len(values) == len(fields):
            found.append(values)
    return found


def parse_fields(text: str, fields: list[str], low: float = 0.0, high: float = 10.0) -> dict[str, float]:
    """Several named scores from one answer, e.g. ``{"naturalness": 8, "artifacts": 6}``.

    Accepted: a JSON object with every field (names compared case-insensitively; the first such
    object is the answer), a VIEScore-style ``{"score": [8, 6]}`` read in field order, or one
    ``field: N`` line per field. A field that is missing, given two different labelled values,
    or out of range is a ScoreParseError. A one-field
    list falls back to :func:`parse_score` with that field as the JSON key.
    """
    if text is None or not text.strip():
        raise ScoreParseError("empty answer")
    if len(fields) == 1:
        return {fields[0]: parse_score(text, low, high, key=fields[0])}
    objects = _json_fields(text, fields)
    if objects:
        values = objects[0]  # the first complete object is the answer, as in parse_score
    else:
        values, missing = {}, []
        for name in fields:
            pattern = re.compile(r"\b" + re.escape(name).replace("_", "[_ ]") + r"\b[\"']?\s*[:=]\s*\**\s*" + _NUMBER,
                                 re.I)
            hits = [float(v) for v in pattern.findall(text)]
            if hits:
                values[name] = _one(hits, f"labelled {name}", text)
            else:
                missing.append(name)
        if missing:
            raise ScoreParseError(f"no value for {missing} in answer {_clip(text)!r}")
    for name, value in values.items():
        if not low <= value <= high:
            raise ScoreParseError(f"{name} {value:g} outside the range [{low:g}, {high:g}] in answer {_clip(text)!r}")
    return values
