"""The editjudge job: edit (stage 1), score (stage 2), report.

    from editjudge.pipeline import run
    run(load_config("config.yaml"), stage="all")

The stage boundary is on disk, and other tools rely on this layout:

    OUT/config.resolved.yaml
    OUT/edits/<editor>/<item>.png       edited images (<item> is ``editjudge.paths.safe_name(item_id)``)
    OUT/edits/manifest.jsonl            one line per editor and item: image, sha1, seed, seconds, error, edit_key, ...
    OUT/scores.jsonl                    one line per editor and item: score, raw_output, error, item_key, ...
    OUT/scores.previous.jsonl           lines scored under other settings, moved aside (never deleted)
    OUT/summary.json, summary.csv, report.md, scores_by_category.png, report.html   (editjudge.report)
    OUT/export/gedit/...                GEdit-Bench's statistics layout (``--export gedit``)

Each stage runs one worker per device, or per device group for a judge whose replica spans
several GPUs (``editjudge.parallel``); each worker first makes its GPU the current CUDA device.
Workers take rank-strided shards of the benchmark, append their lines to
``OUT/.parts/<stage>-rank<r>.jsonl`` (flushed and fsynced per batch) and the parent (rank 0 under
torchrun) merges the parts into the files above in
editor-then-benchmark order. Resume is the same code: a rerun skips edits whose image exists
and opens and whose ``edit_key`` matches (``edit_key``: the editor's settings, seed, instruction,
source image and, for precomputed outputs, the output file), and scores recorded for the same
editor, item, edited image (sha1), scoring settings (``scoring_settings_hash``) and ``item_key``
(instruction and source image); leftover parts of a killed run are merged first. The report
covers exactly this configuration's (editor, item) pairs (``read_scores``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import signal
import time
from pathlib import Path

from PIL import Image

from .benchmark import BenchmarkItem, load_benchmark
from .checks import export_problems, nothing_to_score
from .config import Config, config_from_dict, config_to_dict
from .files import write_atomic
from .jsonl import append_jsonl, read_jsonl, write_jsonl_atomic
from .layout import Layout, PipelineError, output_folder_error, prepare_output  # noqa: F401 (part of this interface)
from . import progress
from .parallel import Launch, bind_device, device_label, resolve_devices, run_workers, shard
from .models.reward.judge import judge_items  # noqa: F401 (scoring lives below the pipeline and the server)
from .resume import digest, edit_key, item_key, source_hasher

logger = logging.getLogger(__name__)

STAGES = ("edit", "score", "report", "all")

def load_items(config: Config, quiet: bool = False) -> list[BenchmarkItem]:
    """The benchmark's items. ``quiet``: without the loaders' warnings (skipped records), which
    ``run`` logs when it loads the benchmark first; the workers load it again, quietly."""
    b = config.benchmark
    loader_logger = logging.getLogger("editjudge.benchmark")
    level = loader_logger.level
    if quiet:
        loader_logger.setLevel(logging.ERROR)
    try:
        return load_benchmark(b.path, b.format, b.categories, b.limit, language=b.language,
                              image_cache=Path(b.image_cache) if b.image_cache else None,
                              max_instruction_chars=b.max_instruction_chars)
    finally:
        loader_logger.setLevel(level)


def scoring_settings(config: Config) -> dict:
    """What decides a score: ``reward.judge.scoring_identity`` of the configured judge."""
    from .models.reward.judge import scoring_identity

    return scoring_identity(config.reward_model)


def scoring_settings_hash(config: Config) -> str:
    return digest(scoring_settings(config))


def _fault_point(stage: str, batches_written: int) -> None:
    """Crash testing: ``EDITJUDGE_KILL_AFTER=edit:3`` SIGKILLs this process once 3 edit batches are written.

    Points: ``edit`` / ``score`` (before the next batch starts), ``edit-unrecorded`` /
    ``score-unrecorded`` (the batch's work is done but its lines are not written yet).
    """
    spec = os.environ.get("EDITJUDGE_KILL_AFTER")
    if spec and spec == f"{stage}:{batches_written}":
        logger.warning("EDITJUDGE_KILL_AFTER=%s: killing this process", spec)
        os.kill(os.getpid(), signal.SIGKILL)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class InvalidItem(ValueError):
    """A benchmark item that cannot be edited or scored at all (``BenchmarkItem.problem``)."""


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------- stage 1


def _finished_edit(layout: Layout, record: dict | None, key: str) -> bool:
    if record is None or record.get("error") or not record.get("image") or record.get("edit_key") != key:
        return False
    try:
        with Image.open(layout.out / record["image"]) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def _save_edit(layout: Layout, editor: str, item: BenchmarkItem, seed: int, output, seconds: float,
               key: str | None = None, source_sha1: str | None = None) -> dict:
    record = {"editor": editor, "item_id": item.id, "category": item.category, "image": None, "sha1": None,
              "seed": seed, "seconds": round(seconds, 4), "error": None, "edit_key": key, "source_sha1": source_sha1}
    if item.instruction_truncated_from is not None:
        record["instruction_truncated_from"] = item.instruction_truncated_from
    if isinstance(output, BaseException):
        record["error"] = _error_text(output)
        return record
    if not isinstance(output, Image.Image):
        record["error"] = f"editor returned {type(output).__name__}, not an image"
        return record
    path = layout.edited_image(editor, item.id)
    buffer = io.BytesIO()
    output.save(buffer, format="PNG")
    data = buffer.getvalue()
    write_atomic(path, data)  # an image file is either absent or complete
    record["image"] = path.relative_to(layout.out).as_posix()
    record["sha1"] = hashlib.sha1(data).hexdigest()
    if "resized_from" in output.info:
        record["resized_from"] = output.info["resized_from"]
    return record


def edit_shard(*, rank: int, world_size: int, device: str, config_data: dict, overwrite: bool) -> None:
    """Stage 1 for one worker: every editor in turn over this rank's batches, one load per editor.

    Batches are fixed slices of the benchmark (``batch_size`` items in benchmark order) dealt out
    rank-strided, and a batch with any unfinished item is redone whole. Batched kernels do not give
    bit-identical results for different batch contents, so this is what makes an edit independent of
    the number of workers and of where an earlier run was killed.
    """
    from .models.editing import EditRequest, build_editor, item_seed

    config = config_from_dict(config_data)
    layout = Layout(Path(config.output_dir))
    items = load_items(config, quiet=True)
    recorded = {} if overwrite else {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.manifest)}
    part = layout.part("edit", rank)
    source_sha1 = source_hasher()
    written = 0
    def work_of(editor_config):
        name = editor_config.name
        mine = shard(list(_chunks(items, editor_config.batch_size)), rank, world_size)
        keys = {item.id: edit_key(config, editor_config, item, device, source_sha1(item.image))
                for batch in mine for item in batch if not item.problem}
        # Invalid items (an empty instruction) are recorded, never edited, and never make a batch unfinished.
        invalid = [item for batch in mine for item in batch if item.problem
                   and (recorded.get((name, item.id)) or {}).get("error") != _error_text(InvalidItem(item.problem))]
        batches = [[item for item in batch if not item.problem] for batch in mine
                   if not all(item.problem or _finished_edit(layout, recorded.get((name, item.id)), keys[item.id])
                              for item in batch)]
        return mine, keys, invalid, batches

    work = [work_of(editor_config) for editor_config in config.editing.editors]
    for editor_config, (_, _, _, batches) in zip(config.editing.editors, work):  # the stage's bar knows its total
        progress.todo(editor_config.name, sum(map(len, batches)))
    for editor_config, (mine, keys, invalid, batches) in zip(config.editing.editors, work):
        name = editor_config.name
        append_jsonl(part, [_save_edit(layout, name, item, item_seed(config.seed, item.id),
                                       InvalidItem(item.problem), 0.0) for item in invalid])
        todo = [item for batch in batches for item in batch]
        logger.info("editor %s on %s: %d of %d items to edit", name, device, len(todo), sum(map(len, mine)))
        if not todo:
            continue
        (layout.edits / name).mkdir(parents=True, exist_ok=True)
        requests = {item.id: EditRequest(item.id, item.image, item.instruction, item_seed(config.seed, item.id),
                                         item.category) for item in todo}
        try:
            if editor_config.type == "diffusers":
                progress.quiet_library("diffusers")
            editor = build_editor(editor_config, device)
        except Exception as exc:  # an editor that cannot load fails its items; the others go on
            logger.exception("editor %s failed to load; its %d items are recorded as failed", name, len(todo))
            failure = RuntimeError(f"editor failed to load: {_error_text(exc)}")
            append_jsonl(part, [_save_edit(layout, name, item, requests[item.id].seed, failure, 0.0, keys[item.id],
                                           source_sha1(item.image)) for item in todo])
            progress.done(name, len(todo), failed=len(todo))
            continue
        try:
            for batch in ([(item, requests[item.id]) for item in batch] for batch in batches):
                _fault_point("edit", written)
                started = time.perf_counter()
                try:
                    outputs = editor.edit([request for _, request in batch])
                    if len(outputs) != len(batch):
                        raise RuntimeError(f"editor returned {len(outputs)} results for {len(batch)} requests")
                except Exception as exc:  # the editor broke its contract for this batch: fail these items only
                    logger.exception("editor %s raised on a batch of %d", name, len(batch))
                    outputs = [exc.with_traceback(None)] * len(batch)  # its frames would pin the failed call's memory
                seconds = (time.perf_counter() - started) / len(batch)
                records = [_save_edit(layout, name, item, request.seed, output, seconds, keys[item.id],
                                      source_sha1(item.image)) for (item, request), output in zip(batch, outputs)]
                _fault_point("edit-unrecorded", written)  # images saved, lines not yet written
                append_jsonl(part, records)
                written += 1
                failed = sum(1 for r in records if r["error"])
                progress.done(name, len(batch), failed=failed)
                # Under the stage's bar (which shows the progress) batch lines are DEBUG.
                logger.log(logging.DEBUG if progress.active() else logging.INFO,
                           "editor %s: edited %s (%d items, %d failed), %.2f s/item", name,
                           progress.describe_ids([item.id for item, _ in batch]), len(batch), failed, seconds)
        finally:
            editor.close()


# ---------------------------------------------------------------------------------------- stage 2


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


def _judge_chunk(model, rubric, chunk: list, out: Path) -> list[dict]:
    """Score one chunk of (key, edit) pairs; one result dict per pair (score fields of the record)."""
    return judge_items(model, rubric, [out / edit["image"] for _, edit in chunk],
                       [item.instruction for (_, item), _ in chunk], [item.image for (_, item), _ in chunk],
                       item_ids=[f"{editor}/{item.id}" for (editor, item), _ in chunk])


def score_shard(*, rank: int, world_size: int, device: str, config_data: dict, overwrite: bool) -> None:
    """Stage 2 for one worker: one judge load, this rank's (editor, item) pairs scored in batches."""
    from .models.reward.judge import build_judge, resolved_settings

    config = config_from_dict(config_data)
    layout = Layout(Path(config.output_dir))
    settings = scoring_settings_hash(config)
    mine = shard(load_items(config, quiet=True), rank, world_size)
    edits = {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.manifest)}
    scored = {} if overwrite else {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.scores)
                                   if r.get("settings") == settings}
    part = layout.part("score", rank)
    source_sha1 = source_hasher()
    inputs = {item.id: None if item.problem else item_key(item, source_sha1(item.image)) for item in mine}
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
                                              error=_error_text(InvalidItem(item.problem))))
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
    try:
        _score_todo(model, rubric, todo, layout, part, settings, device, inputs, resolved)
    finally:
        model.close()  # a vLLM judge stops its servers


def _score_todo(model, rubric, todo: list, layout: Layout, part: Path, settings: str, device: str,
                inputs: dict, resolved: dict) -> None:
    batch_size = model.batch_size if isinstance(model.batch_size, int) else 16
    started = time.perf_counter()
    # A few model batches per write: the judge groups by length within a chunk, and a kill loses at most one chunk.
    for written, chunk in enumerate(_chunks(todo, batch_size * 4)):
        _fault_point("score", written)
        records = [_score_record(key, edit, settings, inputs[key[1].id], **fields, resolved=resolved)
                   for (key, edit), fields in zip(chunk, _judge_chunk(model, rubric, chunk, layout.out))]
        _fault_point("score-unrecorded", written)
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


# ---------------------------------------------------------------------------------------- merging


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


# ---------------------------------------------------------------------------------------- report


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


def score_floor(config: Config) -> float:
    """The scale's minimum: the low end of the judge's ``score_range`` (0 by default)."""
    score_range = config.reward_model.params.get("score_range") or (0, 10)
    return float(score_range[0])


def report(config: Config, items: list[BenchmarkItem], export: list[str] | None = None) -> dict:
    """Write the report files for this run's pairs and scoring settings; returns the records and the files."""
    from .export_gedit import export_gedit
    from .report import write_reports

    records, scope = read_scores(config, items)
    out = Path(config.output_dir)
    from .models.reward.viescore_files import prompts_note

    files = write_reports(out, records, items, title=f"editjudge: {out.name}", floor=score_floor(config),
                          scope=scope, score_range=tuple(config.reward_model.params.get("score_range", (0, 10))),
                          prompts=prompts_note(config.reward_model.params)) if records else {}
    for name in export or []:
        if name == "gedit":
            paths = export_gedit(out, records, items)
            logger.info("GEdit-Bench export: %d files under %s", len(paths), out / "export" / "gedit")
    return {"records": records, "files": files, "floor": score_floor(config)}


# ---------------------------------------------------------------------------------------- the run


def _devices_for(config: Config, stage: str) -> list:
    """One entry per worker of ``stage``: a device, or (judge only) a group of devices one replica spans."""
    if stage == "edit":
        return resolve_devices(config.editing.devices)
    from .models.reward.judge import judge_devices

    return judge_devices(config.reward_model)


EXPORTS = ("gedit",)


def run(config: Config, stage: str = "all", overwrite: bool = False, export: list[str] | None = None) -> dict:
    """Run ``stage`` ("edit", "score", "report" or "all").

    Returns, on rank 0 once the report stage ran, ``{"records": [...], "files": {name: path}, "floor": the
    scale's minimum}`` (the records are the report's, see ``read_scores``); else {}.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    unknown = sorted(set(export or []) - set(EXPORTS))
    if unknown:
        raise ValueError(f"unknown export(s) {unknown}; known: {list(EXPORTS)}")
    stages = ["edit", "score", "report"] if stage == "all" else [stage]
    if not config.editing.editors and stage != "report":
        raise PipelineError("editing.editors is empty: there is nothing to edit or score")
    items = load_items(config)
    logger.info("benchmark %s: %d items in %d categories", config.benchmark.path, len(items),
                len({i.category for i in items}))
    invalid = sum(1 for item in items if item.problem)
    cut = sum(1 for item in items if item.instruction_truncated_from is not None)
    if invalid:
        logger.warning("%d item(s) are invalid (an empty instruction): recorded as failed, never edited or scored",
                       invalid)
    if cut:
        logger.warning("%d instruction(s) longer than %d characters are cut to that length",
                       cut, config.benchmark.max_instruction_chars)
    problems = export_problems(config, items, export or [])
    if problems:
        raise PipelineError("; ".join(problems))
    try:
        return _run(config, items, stages, overwrite, export)
    except OSError as exc:
        if not output_folder_error(exc, Path(config.output_dir)):
            raise
        raise PipelineError(f"cannot write {exc.filename or config.output_dir}: {exc.strerror}. The work finished "
                            "so far is kept: free space (or fix the folder's permissions) and rerun the same "
                            "command to resume") from exc


def _run(config: Config, items: list[BenchmarkItem], stages: list[str], overwrite: bool,
         export: list[str] | None) -> dict:
    launch = Launch.from_env()
    if launch:
        launch.init()
    leader = launch is None or launch.rank == 0
    if leader:
        prepare_output(config, items, stages)
        for name in ("edit", "score"):  # what a killed run left behind
            merge_stage(config, name, items)
    if launch:
        launch.barrier()
    problem = nothing_to_score(config, items, stages)
    if problem:
        raise PipelineError(problem)
    data = config_to_dict(config)
    result: dict = {}
    try:
        for name in stages:
            if name == "report":
                if leader:
                    result = report(config, items, export)
                continue
            target = edit_shard if name == "edit" else score_shard
            devices = _devices_for(config, name)
            started = time.perf_counter()
            if launch:
                device = launch.device(devices)
                bind_device(device)  # this rank's GPU, before the stage touches CUDA
                target(rank=launch.rank, world_size=launch.world_size, device=device,
                       config_data=data, overwrite=overwrite)
                launch.barrier()
                if leader:
                    lines = merge_stage(config, name, items)
                launch.barrier()
            else:
                logger.info("stage %s: %d worker(s) on %s", name, len(devices), ", ".join(map(device_label, devices)))
                try:
                    with progress.StageProgress(name, "edits" if name == "edit" else "pairs",
                                                spawned=len(devices) > 1) as bar:
                        run_workers(target, devices, config_data=data, overwrite=overwrite, progress_queue=bar.queue)
                finally:
                    lines = merge_stage(config, name, items)  # keep what the workers finished, even if one died
            if leader:
                logger.info("stage %s done in %.1f s: %d lines", name, time.perf_counter() - started, lines)
    finally:
        if launch:
            launch.close()
    return result
