"""KRIS-Bench's ``metrics.json`` per category, and editjudge's per-category means of its 1-5 scores.

Upstream (mercurystraw/Kris_Bench, ``metrics_common.py`` / ``metrics_knowledge.py`` /
``metrics_view_change.py``, ``run_evaluation``) writes ``results/<model>/<category>/metrics.json``: an
object of item key -> ``{"instruction": ins_en, "explain": explain_en, "consistency_score",
"consistency_reasoning", "instruction_score", "instruction_reasoning", ["knowledge_score",
"knowledge_reasoning",] "quality_score", "quality_reasoning"}``, UTF-8 (``ensure_ascii=False``, indent 2).
An item whose images could not be read is left out; an item whose answers could not be read is kept with
null scores (the next upstream run asks again for it). ``export`` writes those files for one editor, the
items in annotation order (upstream's order is the order requests finished).

Upstream computes nothing from these files: no mean, no 0-100 mapping, no grouping by knowledge type.
``summarize`` gives, per category and over all items, the mean of each 1-5 score over the items that have
one, with how many had one and how many were unreadable, and says that these means are editjudge's.
"""

from __future__ import annotations

import json
from pathlib import Path

SCORES = {"common": ("consistency", "instruction", "quality"),
          "knowledge": ("consistency", "instruction", "knowledge", "quality"),
          "view": ("consistency", "instruction", "quality")}
NOTE = ("KRIS-Bench's scripts write per-item 1-5 scores (metrics.json per category) and compute no average, "
        "no 0-100 mapping and no knowledge-type grouping: these means over the items with a score are editjudge's")


def _fields(protocol, row: dict) -> dict | None:
    """The item's metrics.json fields from its answers; None when it has none (no request was made, as
    for an item whose images upstream could not read: no record upstream)."""
    answers = row.get("answers")
    if not isinstance(answers, dict) or not answers or row.get("category") not in protocol.kind:
        return None
    return protocol.fields(row["category"], answers)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _figures(protocol, rows: list[dict], names: tuple[str, ...]) -> dict:
    records = [f for f in (_fields(protocol, row) for row in rows) if f is not None]
    out = {"items": len(rows), "recorded": len(records)}
    for name in names:
        values = [float(r[f"{name}_score"]) for r in records if r.get(f"{name}_score") is not None]
        out[name] = {"mean": _mean(values), "n": len(values),
                     "unreadable": sum(1 for r in records if f"{name}_score" in r and r[f"{name}_score"] is None)}
    headline = [float(row["score"]) for row in rows if row.get("score") is not None]
    out["score"] = {"mean": _mean(headline), "n": len(headline)}
    return out


def summarize(protocol, rows: list[dict]) -> dict:
    """Per category (with the script that scores it) and overall, from one editor's rows."""
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        by_category.setdefault(row.get("category"), []).append(row)
    categories, not_reproduced = {}, {}
    for category in sorted(by_category, key=str):
        kind = protocol.kind.get(category)
        if kind is None:
            why = protocol.not_reproduced.get(category, "in none of KRIS-Bench's scripts' CATEGORIES")
            not_reproduced[category] = {"items": len(by_category[category]), "why": why}
            continue
        categories[category] = {"script": f"metrics_{'view_change' if kind == 'view' else kind}.py",
                                **_figures(protocol, by_category[category], SCORES[kind])}
    scored = [row for row in rows if row.get("category") in protocol.kind]
    return {"protocol": protocol.name, "version": protocol.version, "scale": "1-5", "note": NOTE,
            "categories": categories,
            "overall": _figures(protocol, scored, ("consistency", "instruction", "knowledge", "quality")),
            "not_reproduced": not_reproduced}


def write_metrics(protocol, rows: list[dict], folder: Path) -> list[Path]:
    """``<folder>/<category>/metrics.json`` for each scored category, as upstream writes them."""
    by_category: dict[str, dict[str, dict]] = {}
    for row in rows:
        fields = _fields(protocol, row)
        if fields is None:
            continue
        category, _, key = str(row["item_id"]).partition("/")
        record = protocol.annotations.get(category, {}).get(key, {})
        by_category.setdefault(category, {})[key] = {"instruction": record.get("ins_en", ""),
                                                     "explain": record.get("explain_en", ""), **fields}
    written = []
    for category, records in sorted(by_category.items()):
        order = list(protocol.annotations.get(category, {}))
        ranked = sorted(records, key=lambda k: order.index(k) if k in order else len(order))
        path = folder / category / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({k: records[k] for k in ranked}, ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(path)
    return written
