"""Merging and resume: the workers' part files folded into ``edits/manifest.jsonl`` and ``scores.jsonl``
(before a rerun, also what a killed run left), and the score lines a report covers (``read_scores``)."""

from __future__ import annotations

import logging
from pathlib import Path

from .benchmark import BenchmarkItem
from .config import Config
from .jsonl import append_jsonl, read_jsonl, write_jsonl_atomic
from .layout import Layout
from .score_settings import scoring_settings_hash
from .stage_common import load_items

logger = logging.getLogger(__name__)


def _merge(target: Path, parts: list[Path], key, order: dict, keep=lambda r: True, aside: Path | None = None) -> int:
    """Fold ``parts`` into ``target``: one line per key (the newest wins), sorted by ``order``.

    Lines that ``keep`` rejects are appended to ``aside`` instead. Returns the number of lines.
    """
    merged: dict = {}
    moved = []
    for record in read_jsonl(target) + [r for part in parts for r in read_jsonl(part)]:
        if not keep(record):
            moved.append(record)
            continue
        merged.pop(key(record), None)
        merged[key(record)] = record  # re-insert: records unknown to ``order`` keep their latest position
    if moved and aside is not None:
        append_jsonl(aside, moved)
    position = {k: i for i, k in enumerate(merged)}
    rows = sorted(merged.values(), key=lambda r: (order.get(key(r), (len(order), position[key(r)]))))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(target, rows)
    for part in parts:
        part.unlink()
    return len(rows)


def _order(config: Config, items: list[BenchmarkItem]) -> dict:
    return {(e.name, item.id): (i, j) for i, e in enumerate(config.editing.editors) for j, item in enumerate(items)}


def merge_stage(config: Config, stage: str, items: list[BenchmarkItem]) -> int:
    layout = Layout(Path(config.output_dir))
    parts = sorted(layout.parts.glob(f"{stage}-rank*.jsonl"))
    key = lambda r: (r.get("editor"), r.get("item_id"))  # noqa: E731
    if stage == "edit":
        if not parts and not layout.manifest.exists():
            return 0
        return _merge(layout.manifest, parts, key, _order(config, items))
    if not parts and not layout.scores.exists():
        return 0
    settings = scoring_settings_hash(config)
    return _merge(layout.scores, parts, key, _order(config, items), keep=lambda r: r.get("settings") == settings,
                  aside=layout.previous_scores)


def read_scores(config: Config, items: list[BenchmarkItem] | None = None) -> tuple[list[dict], dict]:
    """The score lines a report of this run covers, and that scope (``scope`` in summary.json).

    Exactly the (editor, item) pairs of the configuration's editors and the benchmark's ``items``
    (after ``categories`` and ``limit``; loaded when not given), scored under the current scoring
    settings. Other lines (a removed editor, items outside ``--limit``) stay in scores.jsonl and are
    not counted. A configuration without editors (``--stage report`` on what is on disk) covers every
    editor recorded for these items.
    """
    if items is None:
        items = load_items(config, quiet=True)
    settings = scoring_settings_hash(config)
    lines = [r for r in read_jsonl(Layout(Path(config.output_dir)).scores) if r.get("settings") == settings]
    ids = {item.id for item in items}
    editors = ([e.name for e in config.editing.editors] if config.editing.editors else
               list(dict.fromkeys(r.get("editor") for r in lines if r.get("item_id") in ids)))
    wanted = {(editor, item.id) for editor in editors for item in items}
    records = [r for r in lines if (r.get("editor"), r.get("item_id")) in wanted]
    scope = {"editors": editors, "items": len(items), "pairs": len(wanted),
             "pairs_without_record": len(wanted - {(r.get("editor"), r.get("item_id")) for r in records}),
             "lines_not_counted": len(lines) - len(records)}
    if scope["lines_not_counted"]:
        logger.info("report: %d score line(s) are for other editors or items than this run's; kept in %s, not "
                    "counted", scope["lines_not_counted"], Layout(Path(config.output_dir)).scores.name)
    if scope["pairs_without_record"]:
        logger.warning("report: %d of the %d (editor, item) pairs have no score yet (run the score stage)",
                       scope["pairs_without_record"], scope["pairs"])
    return records, scope
