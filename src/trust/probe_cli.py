"""``editjudge probe``: the probes of ``editjudge.trust.probe`` with the configuration's judge.

    editjudge probe --config configs/demo.yaml             # 16 items, spread over the benchmark
    editjudge probe --config config.yaml --limit 32 --set reward_model.params.score_mode=logits

Scores through the one judge path (``build_judge``, ``judge_items``) on the judge's first device,
prints each probe's mean and pass or fail and the verdict, and writes ``OUT/probes.json``; when
``OUT/scores.jsonl`` holds scores, the reports are written again so that report.html and report.md
show the probes. Probe images are made in memory and never written anywhere.

Items: ``--limit`` of them (default 16) spread evenly over the benchmark's valid items, over the items
the run's first editor edited when ``OUT/edits`` has its edits (so that ``wrong_instruction`` and
``repeat`` use real edits). Exit status: 0 the judge passes every probe it could be given, 1 it fails
one (it is unfit for the rubric), 2 a configuration or benchmark mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from pathlib import Path

from ..benchmark import BenchmarkError
from ..config import ConfigError, load_config
from ..redaction import install_log_redaction, redact, register_judge_key

logger = logging.getLogger(__name__)

DEFAULT_ITEMS = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editjudge probe", description="Check that the config's judge sees what "
                                     "it should: unchanged sources, blank and noise images, wrong instructions, "
                                     "the same input twice.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML configuration file (the job's)")
    parser.add_argument("--limit", type=int, default=DEFAULT_ITEMS,
                        help=f"how many benchmark items to probe with (default {DEFAULT_ITEMS})")
    parser.add_argument("--output-dir", help="the run's folder (overrides output_dir): its edits are used, "
                                             "probes.json goes there")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key (repeatable)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def spread(items: list, n: int) -> list:
    """``n`` of ``items`` evenly spaced (all of them when there are no more than ``n``), in order."""
    if len(items) <= n:
        return list(items)
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)] if n > 1 else items[:1]


def first_editor_edits(config, items: list) -> tuple[dict[str, Path], str | None]:
    """The first editor's successful edits in ``OUT/edits`` whose image is there: item id -> path; or {} and
    why there are none."""
    from ..jsonl import read_jsonl
    from ..layout import Layout

    if not config.editing.editors:
        return {}, "the configuration has no editor"
    layout = Layout(Path(config.output_dir))
    editor = config.editing.editors[0].name
    wanted = {item.id for item in items}
    edits = {}
    for row in read_jsonl(layout.manifest):
        if row.get("editor") == editor and row.get("item_id") in wanted and not row.get("error") and row.get("image"):
            path = layout.out / row["image"]
            if path.is_file():
                edits[row["item_id"]] = path
    if not edits:
        return {}, (f"no edits of the first editor, {editor}, in {layout.edits} (run the edit stage first: "
                    f"editjudge --config ... --stage edit)")
    return edits, None


def _line(entry: dict) -> str:
    if entry["skipped"]:
        return f"  {entry['name']:<18} skipped: {entry['skipped']}"
    mean = "-" if entry["mean"] is None else f"{entry['mean']:.2f}"
    mark = "pass" if entry["passed"] else "FAIL"
    failed = f", {entry['n_failed']} failed" if entry["n_failed"] else ""
    return (f"  {entry['name']:<18} {mark}  mean {mean:>5} ({'/'.join(entry['read'])}, n={entry['n']}{failed}); "
            f"{entry['rule']}")


def format_result(result: dict) -> str:
    lines = [f"probes of rubric {result['rubric']} on {result['n_items']} items, scale "
             f"{result['scale'][0]:g}-{result['scale'][1]:g}:"]
    ref = result.get("reference")
    if ref:
        lines.append(f"  {'(real edits)':<18} mean {ref['score']:.2f} with their own instructions, n={ref['n']}"
                     if ref.get("score") is not None else f"  (real edits) the judge scored none of {ref['n']}")
    lines += [_line(entry) for entry in result["probes"]]
    lines.append(result["verdict"]["text"])
    return "\n".join(lines)


def probe(config, limit: int) -> dict:
    """Run the probes with ``config``'s judge; returns what probes.json holds."""
    from ..models.reward.judge import build_judge, judge_devices, judge_items
    from ..parallel import bind_device
    from ..score_settings import scoring_settings_hash
    from ..stage_common import load_items
    from .probe import run_probes

    items = [item for item in load_items(config) if not item.problem]
    if not items:
        raise BenchmarkError("the benchmark has no valid item to probe with")
    edits, reason = first_editor_edits(config, items)
    chosen = spread([item for item in items if item.id in edits] if edits else items, limit)
    device = judge_devices(config.reward_model)[0]
    bind_device(device)
    with contextlib.suppress(ImportError):  # no load bars above the table
        importlib.import_module("transformers.utils.logging").disable_progress_bar()
    model, rubric = build_judge(config.reward_model, device, output_dir=config.output_dir, quiet=True)
    try:
        def score(images: list, instructions: list, sources: list) -> list[dict]:
            return judge_items(model, rubric, images, instructions, sources)

        scale = config.reward_model.params.get("score_range") or tuple(getattr(model, "score_range", (0, 10)))
        result = run_probes(score, chosen, edits, scale, no_edits_reason=reason, rubric=rubric.name)
    finally:
        model.close()
    result["judge"] = {"type": config.reward_model.type, "settings_hash": scoring_settings_hash(config),
                       "editor_of_edits": config.editing.editors[0].name if edits else None}
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    if args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    overrides = list(args.set) + ([f"output_dir={json.dumps(args.output_dir)}"] if args.output_dir else [])
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    register_judge_key(config)
    from ..files import write_atomic

    try:
        result = probe(config, args.limit)
    except (BenchmarkError, ValueError) as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 2
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = write_atomic(out / "probes.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(format_result(result))
    print(f"probes.json: {path}")
    if (out / "scores.jsonl").is_file():  # the reports show the probes
        from ..pipeline import report
        from ..stage_common import load_items

        files = report(config, load_items(config, quiet=True))["files"]
        for name in ("report.md", "report.html"):
            if name in files:
                print(f"{name}: {files[name]}")
    return 1 if result["verdict"]["fit"] is False else 0
