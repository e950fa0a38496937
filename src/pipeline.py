"""The editjudge job. This version runs the scoring stage on the benchmark's source images.

Scores go to ``OUT/scores.jsonl`` (one line per editor and item) and a per-category summary is
logged and returned. The editing stage, which feeds edited images into the same scoring code,
comes next (see the README's roadmap).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from src.benchmark import BenchmarkItem, load_benchmark
from src.config import Config, config_to_dict

logger = logging.getLogger(__name__)

SOURCE_EDITOR = "source"  # the unedited inputs: the judge's baseline for the benchmark


@dataclass
class ScoreRecord:
    item_id: str
    category: str
    editor: str
    score: float | None
    raw_output: str | None
    error: str | None
    fallback: bool


def score_items(reward_model, items: list[BenchmarkItem], editor: str, images: list) -> list[ScoreRecord]:
    results = reward_model.batch_evaluate(
        images,
        instructions=[item.instruction for item in items],
        original_images=[item.image for item in items] if reward_model.compare_with_original else None,
    )
    return [
        ScoreRecord(item.id, item.category, editor, None if math.isnan(r.score) else r.score,
                    r.raw_output, r.error, r.fallback)
        for item, r in zip(items, results)
    ]


def category_summary(records: list[ScoreRecord]) -> dict[str, dict]:
    """Per category: items, scored, failed, mean over the scored ones (None when none scored)."""
    groups: dict[str, list[ScoreRecord]] = defaultdict(list)
    for record in records:
        groups[record.category].append(record)
    summary = {}
    for category, group in groups.items():
        scores = [r.score for r in group if r.score is not None]
        summary[category] = {
            "n": len(group),
            "scored": len(scores),
            "failed": len(group) - len(scores),
            "mean": sum(scores) / len(scores) if scores else None,
        }
    return summary


def format_summary(summary: dict[str, dict]) -> str:
    width = max([len("category")] + [len(c) for c in summary])
    lines = [f"{'category':<{width}}  {'n':>3}  {'failed':>6}  {'mean':>6}"]
    for category, row in summary.items():
        mean = "-" if row["mean"] is None else f"{row['mean']:.3f}"
        lines.append(f"{category:<{width}}  {row['n']:>3}  {row['failed']:>6}  {mean:>6}")
    return "\n".join(lines)


def run(config: Config) -> dict[str, dict]:
    from src.models.reward import get_reward_model_class

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True))
    items = load_benchmark(config.benchmark.path, config.benchmark.format, config.benchmark.categories,
                           config.benchmark.limit)
    logger.info("benchmark %s: %d items in %d categories", config.benchmark.path, len(items),
                len({i.category for i in items}))
    reward_model = get_reward_model_class(config.reward_model.type).from_config(config.reward_model.params)
    records = score_items(reward_model, items, SOURCE_EDITOR, [item.image for item in items])
    with open(out / "scores.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
    summary = category_summary(records)
    stats = reward_model.stats
    logger.info("scoring: %d items, %d failed, %d batch fallbacks, %.2f images/s",
                stats.items, stats.failures, stats.batch_fallbacks, stats.images_per_second)
    return summary
