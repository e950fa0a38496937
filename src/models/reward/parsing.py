"""Turn a judge's free-text answer into a score, or a clear reason why not.

Accepted, in order of precedence:
1. JSON objects with a ``score`` key, also inside prose or code fences: ``{"score": 7}``;
2. a labelled final answer: ``Final score: 7``, ``Overall score is 7``;
3. a labelled score: ``Score: 7``, ``score = 7``;
4. a fraction of the configured maximum: ``7/10``, ``7 out of 10``;
5. a last line that is only a number (reasoning followed by the score).
Within one level, different values are a conflict and a failure. A value outside the range is a
failure. Nothing here ever invents a score.
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


class ScoreParseError(ValueError):
    """The answer holds no usable score; the message says why."""


def _json_scores(text: str, key: str) -> list[float]:
    values = []
    for match in _JSON_OBJECT.finditer(text):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        for k, v in obj.items():
            if k.lower() != key:
                continue
            if isinstance(v, bool):
                continue
            if isinstance(v, (int, float)):
                values.append(float(v))
            elif isinstance(v, str) and re.fullmatch(_NUMBER, v.strip()):
                values.append(float(v))
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
        value = _one(json_values, "JSON", text)
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
