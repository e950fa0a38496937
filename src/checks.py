"""Checks around a run: what must hold before any stage starts, and why a finished run failed.

    export_problems(config, items, ["gedit"])     # before the run: what --export gedit (or imgedit) needs
    nothing_to_score(config, items, stages)       # --stage score on a folder without edits
    all_failed(config, stage)                     # after the run: None, or why every pair failed
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .benchmark import BenchmarkItem
from .config import Config
from .jsonl import read_jsonl
from .layout import Layout
from .merge import read_scores


def _rubric_names(config: Config) -> set[str]:
    from .models.reward.rubrics import get_rubric
    from .models.reward.viescore_files import rubric_spec

    rubric = get_rubric(rubric_spec(config.reward_model.params))
    return {f for p in rubric.prompts for f in p.fields} | {name for name, _ in rubric.combine}


def export_problems(config: Config, items: list[BenchmarkItem], export: list[str]) -> list[str]:
    """What ``--export`` needs that this run cannot give, found before any work (empty: fine)."""
    problems = _protocol_problems(config, items, export)
    if "gedit" not in export:
        return problems
    from .export_gedit import GEDIT_GROUPS

    names = _rubric_names(config)
    if not {"SC", "PQ"} <= names:
        problems.append("--export gedit needs sub-scores SC and PQ: set reward_model.params.rubric: viescore "
                        f"(the rubric gives {sorted(names)})")
    categories = sorted({item.category for item in items})
    if not set(categories) & set(GEDIT_GROUPS):
        problems.append(f"--export gedit: none of the benchmark's categories {categories} is a GEdit-Bench task "
                        f"type {list(GEDIT_GROUPS)} (use benchmark.format: gedit on a GEdit-Bench copy)")
    no_language = [item.id for item in items if not item.language]
    if no_language:
        problems.append(f"--export gedit: {len(no_language)} item(s) have no language (e.g. {no_language[:3]}); "
                        "GEdit rows need one: use benchmark.format: gedit")
    return problems


def _protocol_problems(config: Config, items: list[BenchmarkItem], export: list[str]) -> list[str]:
    """``--export <protocol>`` needs that protocol configured; a protocol needs items it has prompts for."""
    from .models.reward.judge import judge_protocol
    from .protocols.registry import PROTOCOLS

    protocol = judge_protocol(config.reward_model.params)
    problems = [f"--export {name} needs reward_model.params.protocol: {{name: {name}, dir: <the benchmark's "
                f"checkout>}} (the run is scored {'with ' + protocol.name if protocol else 'with a rubric'})"
                for name in export if name in PROTOCOLS and (protocol is None or protocol.name != name)]
    known = getattr(protocol, "categories", None)
    categories = sorted({item.category for item in items})
    if known is not None and items and not set(categories) & set(known):
        problems.append(f"reward_model.params.protocol: none of the benchmark's categories {categories[:10]} is one "
                        f"the {protocol.name} protocol judges ({sorted(known)}); is benchmark.format right?")
    return problems


def nothing_to_score(config: Config, items: list[BenchmarkItem], stages: list[str]) -> str | None:
    """Why ``--stage score`` has nothing to score (no edit recorded for any editor and item), or None."""
    if "score" not in stages or "edit" in stages:
        return None
    layout = Layout(Path(config.output_dir))
    wanted = {(e.name, item.id) for e in config.editing.editors for item in items}
    recorded = [r for r in read_jsonl(layout.manifest) if (r.get("editor"), r.get("item_id")) in wanted]
    if recorded:
        return None
    return (f"nothing to score: {layout.manifest} records no edit of these editors and items; run the edit "
            "stage first (--stage edit, or --stage all)")


def _why(records: list[dict], what: str) -> str:
    def reason(record: dict) -> str:  # the same failure for different items counts once
        text = str(record.get("error") or "no score")
        item = str(record.get("item_id"))
        return text.replace(repr(item), "<item>").replace(item, "<item>")[:300]

    counts = Counter(reason(r) for r in records)
    lines = [f"every one of the {len(records)} {what} failed; the most common reasons:"]
    lines += [f"  {n} x {error}" for error, n in counts.most_common(3)]
    return "\n".join(lines)


def all_failed(config: Config, stage: str) -> str | None:
    """None when some pair of the last stage run has a result; else a few lines saying why none has."""
    layout = Layout(Path(config.output_dir))
    names = {e.name for e in config.editing.editors}
    if stage == "edit":
        records = [r for r in read_jsonl(layout.manifest) if r.get("editor") in names]
        return _why(records, "edits") if records and all(r.get("error") for r in records) else None
    if stage == "report" and not layout.scores.exists():
        return None
    records = [r for r in read_scores(config)[0] if r.get("editor") in names]
    return _why(records, "pairs") if records and all(r.get("score") is None for r in records) else None
