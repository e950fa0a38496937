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
    OUT/export/<protocol>/<editor>/...  what a benchmark's own scripts read (``--export imgedit``: editjudge.protocols)

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

The modules: ``edit_stage`` (stage 1), ``score_stage`` (stage 2), ``merge`` (parts into the files
above, resume, ``read_scores``), ``score_settings`` (what decides a score, and its hash) and
``stage_common`` (what the stages share); this one runs them and writes the report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import progress
from .benchmark import BenchmarkItem
from .checks import export_problems, nothing_to_score
from .config import Config, config_to_dict
from .edit_stage import edit_shard
from .layout import Layout, PipelineError, output_folder_error, prepare_output
from .merge import merge_stage, read_scores
from .models.reward.judge import judge_items  # scoring lives below the pipeline and the server
from .parallel import Launch, bind_device, device_label, resolve_devices, run_workers
from .protocols.registry import PROTOCOLS
from .score_settings import scoring_settings, scoring_settings_hash
from .score_stage import score_shard
from .stage_common import InvalidItem, load_items

# What callers and tests import from here; most of it lives in the modules above.
__all__ = ["EXPORTS", "STAGES", "InvalidItem", "Layout", "PipelineError", "edit_shard", "judge_items",
           "load_items", "merge_stage", "output_folder_error", "prepare_output", "read_scores", "report", "run",
           "score_floor", "score_shard", "scoring_settings", "scoring_settings_hash"]

logger = logging.getLogger(__name__)

STAGES = ("edit", "score", "report", "all")


# ---------------------------------------------------------------------------------------- report


def score_scale(config: Config) -> tuple[float, float]:
    """The scale of an item's score: a benchmark protocol's (ImgEdit's 1-5), else the judge's ``score_range``
    ((0, 10) by default)."""
    from .models.reward.judge import judge_protocol

    protocol = judge_protocol(config.reward_model.params)
    if protocol is not None:
        low, high = getattr(protocol, "score_range", (0, 10))
    else:
        low, high = config.reward_model.params.get("score_range") or (0, 10)
    return float(low), float(high)


def score_floor(config: Config) -> float:
    """The scale's minimum (``score_scale``): 0 by default."""
    return score_scale(config)[0]


def report(config: Config, items: list[BenchmarkItem], export: list[str] | None = None) -> dict:
    """Write the report files for this run's pairs and scoring settings; returns the records and the files."""
    from .export_gedit import export_gedit
    from .models.reward.judge import judge_protocol
    from .protocols.registry import protocol_note
    from .protocols.results import export_protocol, protocol_section
    from .report import write_reports

    records, scope = read_scores(config, items)
    out = Path(config.output_dir)
    from .models.reward.viescore_files import prompts_note

    params = config.reward_model.params
    protocol = judge_protocol(params)
    note = protocol_note(protocol, params["protocol"]["dir"]) if protocol is not None else prompts_note(params)
    files = write_reports(out, records, items, title=f"editjudge: {out.name}", floor=score_floor(config),
                          scope=scope, score_range=score_scale(config), prompts=note,
                          protocol=protocol_section(protocol, records) if protocol is not None else None
                          ) if records else {}
    for name in export or []:
        if name == "gedit":
            paths = export_gedit(out, records, items)
            logger.info("GEdit-Bench export: %d files under %s", len(paths), out / "export" / "gedit")
        elif protocol is not None and name == protocol.name:
            paths = export_protocol(protocol, out, records)
            logger.info("%s export: %d files under %s", name, len(paths), out / "export" / name)
    return {"records": records, "files": files, "floor": score_floor(config),
            "languages": {item.id: item.language for item in items}}


# ---------------------------------------------------------------------------------------- the run


def _devices_for(config: Config, stage: str) -> list:
    """One entry per worker of ``stage``: a device, or (judge only) a group of devices one replica spans."""
    if stage == "edit":
        return resolve_devices(config.editing.devices)
    from .models.reward.judge import judge_devices

    return judge_devices(config.reward_model)


EXPORTS = ("gedit", *PROTOCOLS)  # --export <protocol>: that protocol's own export


def run(config: Config, stage: str = "all", overwrite: bool = False, export: list[str] | None = None,
        canary: dict | None = None, canary_max_drift: float | None = None) -> dict:
    """Run ``stage`` ("edit", "score", "report" or "all").

    ``canary``: a loaded drift canary (``trust.canary.load_canary``), rescored at the start of the score
    stage; over ``canary_max_drift`` the run stops there (``trust.canary.CanaryDrift``).

    Returns, on rank 0 once the report stage ran, ``{"records": [...], "files": {name: path}, "floor": the
    scale's minimum, "languages": {item id: language}}`` (the records are the report's, see ``read_scores``);
    else {}.
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
        return _run(config, items, stages, overwrite, export, (canary, canary_max_drift))
    except OSError as exc:
        if not output_folder_error(exc, Path(config.output_dir)):
            raise
        raise PipelineError(f"cannot write {exc.filename or config.output_dir}: {exc.strerror}. The work finished "
                            "so far is kept: free space (or fix the folder's permissions) and rerun the same "
                            "command to resume") from exc


def _run(config: Config, items: list[BenchmarkItem], stages: list[str], overwrite: bool,
         export: list[str] | None, canary: tuple = (None, None)) -> dict:
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
            if name == "score" and canary[0] is not None:  # the drift canary, before any pair is scored
                from .trust.canary import gate

                gate(config, canary[0], canary[1], leader=leader, barrier=launch.barrier if launch else None)
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
