"""Stage 2, the scores: one worker per device (or device group), one judge load each, the worker's
(editor, item) pairs scored in chunks; lines go to ``OUT/.parts/score-rank<r>.jsonl`` (merged by
``editjudge.merge``). Scoring itself lives below this stage and the server (``models.reward.judge``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import progress
from .benchmark import BenchmarkItem
from .config import config_from_dict
from .jsonl import append_jsonl, read_jsonl
from .layout import Layout
from .models.reward.judge import judge_items, judge_protocol_items
from .parallel import shard
from .resume import item_key, source_hasher
from .score_settings import scoring_settings_hash
from .stage_common import InvalidItem, chunks, error_text, fault_point, load_items

logger = logging.getLogger(__name__)


def _score_record(pair: tuple[str, BenchmarkItem], edit: dict | None, settings: str, inputs: str | None,
                  **fields) -> dict:
    editor, item = pair
    record = {"item_id": item.id, "category": item.category, "editor": editor, "score": None, "raw_output": None,
              "error": None, "fallback": False, "failed_stage": None,
              "image": edit.get("image") if edit else None, "image_sha1": edit.get("sha1") if edit else None,
              "settings": settings, "item_key": inputs}
    if item.instruction_truncated_from is not None:
        record["instruction_truncated_from"] = item.instruction_truncated_from
    record.update(fields)
    return record


def _judge_chunk(model, rubric, chunk: list, out: Path, protocol=None) -> list[dict]:
    """Score one chunk of (key, edit) pairs; one result dict per pair (score fields of the record), with
    the rubric or, where one is configured, the benchmark's own protocol."""
    if protocol is not None:
        return judge_protocol_items(model, protocol, [item for (_, item), _ in chunk],
                                    [out / edit["image"] for _, edit in chunk],
                                    item_ids=[f"{editor}/{item.id}" for (editor, item), _ in chunk])
    return judge_items(model, rubric, [out / edit["image"] for _, edit in chunk],
                       [item.instruction for (_, item), _ in chunk], [item.image for (_, item), _ in chunk],
                       item_ids=[f"{editor}/{item.id}" for (editor, item), _ in chunk])


def score_shard(*, rank: int, world_size: int, device: str, config_data: dict, overwrite: bool) -> None:
    """Stage 2 for one worker: one judge load, this rank's (editor, item) pairs scored in batches."""
    from .models.reward.judge import build_judge, judge_protocol, resolved_settings

    config = config_from_dict(config_data)
    layout = Layout(Path(config.output_dir))
    settings = scoring_settings_hash(config)
    mine = shard(load_items(config, quiet=True), rank, world_size)
    edits = {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.manifest)}
    scored = {} if overwrite else {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.scores)
                                   if r.get("settings") == settings}
    part = layout.part("score", rank)
    source_sha1 = source_hasher()
    by_category = config.reward_model.params.get("protocol") is not None  # a protocol's prompt is the category's
    inputs = {item.id: None if item.problem else item_key(item, source_sha1(item.image), by_category) for item in mine}
    # Settings that only this worker's device decides (dtype auto): recorded, and a score made under
    # others is redone, while the settings hash stays the same wherever the report is read.
    resolved = resolved_settings(config.reward_model, device)
    failures, todo = [], []
    for editor_config in config.editing.editors:
        for item in mine:
            key = (editor_config.name, item)
            edit = edits.get((editor_config.name, item.id))
            if item.problem:
                failures.append(_score_record(key, None, settings, None, failed_stage="input",
                                              error=error_text(InvalidItem(item.problem))))
            elif edit is None:
                failures.append(_score_record(key, None, settings, inputs[item.id], failed_stage="edit",
                                              error="no edit recorded (run the edit stage first)"))
            elif edit.get("error"):
                failures.append(_score_record(key, edit, settings, inputs[item.id], failed_stage="edit",
                                              error=f"edit failed: {edit['error']}"))
            else:
                previous = scored.get((editor_config.name, item.id))
                if (previous and previous.get("failed_stage") is None and previous.get("image_sha1") == edit.get("sha1")
                        and previous.get("item_key") == inputs[item.id] and previous.get("resolved", {}) == resolved):
                    continue
                todo.append((key, edit))
    append_jsonl(part, failures)
    logger.info("scoring on %s: %d of %d pairs to score (%d failed edits recorded)", device, len(todo),
                len(mine) * len(config.editing.editors), len(failures))
    for editor_config in config.editing.editors:
        progress.todo(editor_config.name, sum(1 for (editor, _), _ in todo if editor == editor_config.name))
    if not todo:
        return
    if progress.active():
        progress.quiet_library("transformers")  # the stage's bar replaces the judge's own, and no load bars
    # Remote judges keep their logs and response cache under OUT/logs and OUT/cache.
    model, rubric = build_judge(config.reward_model, device, output_dir=str(layout.out), quiet=progress.active())
    if progress.active():
        model.batch_log_level = logging.DEBUG  # the bar shows the progress; batch lines only with --log-level DEBUG
    protocol = judge_protocol(config.reward_model.params)  # read once per worker, as the settings hash read it
    try:
        _score_todo(model, rubric, todo, layout, part, settings, device, inputs, resolved, protocol)
    finally:
        model.close()  # a vLLM judge stops its servers


def _score_todo(model, rubric, todo: list, layout: Layout, part: Path, settings: str, device: str,
                inputs: dict, resolved: dict, protocol=None) -> None:
    batch_size = model.batch_size if isinstance(model.batch_size, int) else 16
    started = time.perf_counter()
    # A few model batches per write: the judge groups by length within a chunk, and a kill loses at most one chunk.
    for written, chunk in enumerate(chunks(todo, batch_size * 4)):
        fault_point("score", written)
        records = [_score_record(key, edit, settings, inputs[key[1].id], **fields, resolved=resolved)
                   for (key, edit), fields in zip(chunk, _judge_chunk(model, rubric, chunk, layout.out, protocol))]
        fault_point("score-unrecorded", written)
        append_jsonl(part, records)
        for editor in dict.fromkeys(r["editor"] for r in records):
            mine_done = [r for r in records if r["editor"] == editor]
            progress.done(editor, len(mine_done), failed=sum(1 for r in mine_done if r["score"] is None))
    stats, seconds = model.stats, time.perf_counter() - started
    # Where the stage's time went: the model's forward calls, building inputs (opening the edited
    # images included), and the rest (parsing, writing lines) outside the judge.
    logger.info("scoring on %s: %d items in %.2fs (%.2f images/s): %.0f%% in the model's forward calls, %.0f%% "
                "opening images and building inputs, %.0f%% outside the judge; %d failed, %d batch fallbacks",
                device, stats.items, seconds, stats.items / seconds if seconds > 0 else 0.0,
                100 * stats.forward_seconds / seconds if seconds > 0 else 0,
                100 * stats.prepare_seconds / seconds if seconds > 0 else 0,
                100 * max(0.0, seconds - stats.seconds) / seconds if seconds > 0 else 0,
                stats.failures, stats.batch_fallbacks)
    if hasattr(stats, "usage"):
        logger.info("scoring on %s: judge usage: %s", device, stats.usage())
