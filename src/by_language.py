"""The report's numbers per instruction language, beside the combined ones (GEdit-Bench reports its
English and Chinese halves apart).

Score records carry no language; the benchmark items do (``BenchmarkItem.language``: "en"/"cn" for
GEdit-Bench, as the dataset spells them). So the split maps each record's item id to its item's language:

    split = by_language(records, {item.id: item.language for item in items}, floor=0.0)
    split["cn"]["editors"]["my-editor"]["overall"]["macro"]

Each language's numbers are :mod:`editjudge.aggregate`'s on that language's records alone: its macro
means (and ``macro_common`` over the items every editor scored in that language), per category Stats.
A record whose item has no language (or is not among the items) falls under ``UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Mapping

from .aggregate import category_stats, editor_overall

__all__ = ["UNKNOWN", "by_language"]

UNKNOWN = "unknown"


def by_language(records: list[dict], languages: Mapping[str, str | None], floor: float = 0.0) -> dict[str, dict]:
    """``{language: {"n_items", "editors": {editor: {"overall": editor_overall entry, "categories": {category:
    Stats dict}}}}}``, languages in first-appearance order among ``records``; {} when no item has a language."""
    if not any(languages.get(r["item_id"]) for r in records):
        return {}
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(languages.get(r["item_id"]) or UNKNOWN, []).append(r)
    result = {}
    for language, mine in groups.items():
        overall = editor_overall(mine, floor)
        stats = category_stats(mine)
        result[language] = {"n_items": len({r["item_id"] for r in mine}),
                            "editors": {e: {"overall": overall[e],
                                            "categories": {c: st.to_dict() for c, st in stats[e].items()}}
                                        for e in overall}}
    return result
