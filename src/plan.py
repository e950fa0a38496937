"""The plan a run prints before it imports torch or loads anything: what it will do, and what is done.

    for line in plan_lines(config, stage="all", overwrite=False, export=[], source="configs/demo.yaml"):
        print(line)

Only the configuration and the small files of the output folder are read (the manifest and the
scores), so the first lines come within a second of the command.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import Config
from .jsonl import read_jsonl
from .layout import Layout

AUTO_DEVICES = "auto (every visible GPU, else the CPU)"


def _short(path) -> str:
    """A path as a person reads it: ``configs/../x`` -> ``x``, relative to here when it is below here."""
    if not isinstance(path, str) or not path:
        return str(path)
    normal = os.path.normpath(path)
    if os.path.isabs(normal) and Path(normal).is_relative_to(Path.cwd()):
        return os.path.relpath(normal)
    return normal


def _devices(spec) -> str:
    from .parallel import device_label

    if spec == "auto":
        return AUTO_DEVICES
    return ", ".join(device_label(d) for d in spec) if isinstance(spec, list) else str(spec)


def _vllm_lines(config: Config) -> list[str]:
    """One line per vLLM server: its worker's device and the physical GPUs it gets."""
    from .config import vllm_servers
    from .models.reward.placement import PlacementError, gpu_count_without_torch

    try:
        servers = vllm_servers(config.reward_model, gpu_count_without_torch())
    except PlacementError as exc:
        return [f"  vllm       cannot place the servers: {exc}"]
    return [f"  vllm       server {i}: {server.label}" for i, server in enumerate(servers)]


def _done(config: Config, overwrite: bool) -> str:
    from .score_settings import scoring_settings_hash

    layout = Layout(Path(config.output_dir))
    if not layout.out.exists():
        return "nothing yet (a new output folder)"
    names = {e.name for e in config.editing.editors}
    edits = [r for r in read_jsonl(layout.manifest) if r.get("editor") in names]
    settings = scoring_settings_hash(config)
    scores = [r for r in read_jsonl(layout.scores) if r.get("editor") in names and r.get("settings") == settings]
    failed_edits = sum(1 for r in edits if r.get("error"))
    scored = sum(1 for r in scores if r.get("score") is not None)
    text = (f"{len(edits) - failed_edits} edits ({failed_edits} failed) and {scored} scores "
            f"({len(scores) - scored} failed) under these settings")
    return text + ("; --overwrite: all redone" if overwrite else "; a rerun resumes from them")


def plan_lines(config: Config, *, stage: str, overwrite: bool, export: list[str], source: str,
               valid: bool = True) -> list[str]:
    """``valid=False``: the config has problems (listed after the plan), so what is already done is
    not read (it needs the judge's settings, which may be the problem)."""
    b, judge = config.benchmark, config.reward_model
    params = judge.params
    stages = ["edit", "score", "report"] if stage == "all" else [stage]
    benchmark = f"{_short(b.path)} (format {b.format}" + (f", first {b.limit} items" if b.limit else "") + \
        (f", categories {', '.join(b.categories)}" if b.categories else "") + ")"
    lines = [f"editjudge plan ({source}):", f"  benchmark  {benchmark}"]
    for editor in config.editing.editors:
        where = editor.model_path if editor.type == "diffusers" else editor.image_dir
        lines.append(f"  editor     {editor.name}: {editor.type} {_short(where)} (batch {editor.batch_size})")
    rubric = params.get("rubric", "simple")
    rubric = rubric if isinstance(rubric, str) else rubric.get("name", "custom") if isinstance(rubric, dict) else "?"
    if params.get("viescore_prompts_dir"):
        rubric += f" with the official prompts of {_short(params['viescore_prompts_dir'])}"
    scoring = f"rubric {rubric}"
    protocol = params.get("protocol")
    if isinstance(protocol, dict):  # a benchmark's own scoring (editjudge.protocols) replaces the rubric
        scoring = f"protocol {protocol.get('name')} from {_short(protocol.get('dir'))}"
    model = params.get("model_path") or params.get("model")  # a local judge's weights, or a served model's name
    lines.append(f"  judge      {judge.type} {_short(model)} ({scoring}, "
                 f"score_mode {params.get('score_mode', 'generate')}, batch {params.get('batch_size', 4)})")
    lines.append(f"  devices    edit: {_devices(config.editing.devices)}; score: {_devices(judge.devices)}")
    if judge.type == "vllm":
        lines.extend(_vllm_lines(config))
    lines.append(f"  stages     {' -> '.join(stages)}" + (f" -> export {', '.join(export)}" if export else ""))
    done = _done(config, overwrite) if valid else "not read (the configuration has problems, below)"
    lines.append(f"  output     {_short(config.output_dir)}: {done}")
    return lines
