"""editjudge: run image editors over a benchmark, then score every edit with a Qwen3-VL judge.

The same command three ways: ``editjudge ...`` (installed), ``python -m editjudge ...`` and
``python main.py ...`` from a checkout.

    python main.py --config config.yaml                      # edit, score, report
    python main.py --config config_multi_gpu.yaml            # one worker per GPU in each stage
    python main.py --config configs/demo.yaml --stage score --limit 8 --batch-size 2
    python main.py --config config.yaml --devices cuda:0,cuda:1 --set reward_model.params.score_mode=logits
    torchrun --nnodes 2 --nproc-per-node 8 ... main.py --config config_multi_gpu.yaml   # several machines
    python main.py serve --config config.yaml                # the judge as a reward server (serve --help)
    python main.py agree LABELS [VERDICTS]                   # a judge against people or another judge (agree --help)
    python main.py pairwise --config config.yaml             # pairwise verdicts of the run's editors (pairwise --help)

Stages: edit (OUT/edits/<editor>/<item>.png and OUT/edits/manifest.jsonl), score
(OUT/scores.jsonl), report (summary.json/.csv, report.md, scores_by_category.png, report.html),
all (the three in order).
A rerun resumes: finished edits and scores are skipped unless --overwrite.

Exit status: 0 done; 1 a worker failed (finished work is kept; rerun to resume) or every pair
failed (the last lines say why); 2 invalid configuration, benchmark or output folder, or nothing to do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from .benchmark import BenchmarkError
from .config import ConfigError, model_problems, read_config
from .protocols.registry import PROTOCOLS
from .redaction import install_log_redaction, redact, register_judge_key


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark image editors with a Qwen3-VL judge.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument("--stage", default="all", choices=["edit", "score", "report", "all"],
                        help="which stage to run (default: all)")
    parser.add_argument("--output-dir", help="where results go (overrides output_dir)")
    parser.add_argument("--limit", type=int, help="use only the first N benchmark items (overrides benchmark.limit)")
    parser.add_argument("--batch-size", type=_batch_size,
                        help="reward-model batch size, a number or auto (overrides reward_model.params.batch_size)")
    parser.add_argument("--devices",
                        help="comma-separated devices for both stages, e.g. cuda:0,cuda:1 or cpu,cpu or auto "
                             "(overrides editing.devices and reward_model.devices); one worker process per entry")
    parser.add_argument("--no-batch", action="store_true",
                        help="score one image at a time (reward_model.params.use_batch_inference: false)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key, e.g. --set reward_model.params.max_new_tokens=32 (repeatable)")
    parser.add_argument("--export", action="append", default=[], choices=["gedit", *PROTOCOLS],
                        help="also write results in another tool's layout: gedit = the per-category CSVs that "
                             "GEdit-Bench's calculate_statistics.py reads (needs the viescore rubric); imgedit = "
                             "per editor the result.json ImgEdit's step1_get_avgscore.py reads (needs "
                             "reward_model.params.protocol: {name: imgedit, ...})")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo the chosen stages' work instead of resuming from what is on disk")
    parser.add_argument("--canary", metavar="FILE",
                        help="a drift canary (editjudge canary make): its items are rescored at the start of the "
                             "score stage and the drift is printed and recorded (summary.json canary)")
    parser.add_argument("--canary-max-drift", type=float, metavar="X",
                        help="stop before scoring, exit status 1, when the canary's mean absolute drift is over X "
                             "(default: warn only)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set)
    if args.output_dir:
        overrides.append(f"output_dir={json.dumps(args.output_dir)}")
    if args.limit is not None:
        overrides.append(f"benchmark.limit={args.limit}")
    if args.batch_size is not None:
        overrides.append(f"reward_model.params.batch_size={json.dumps(args.batch_size)}")
    if args.no_batch:
        overrides.append("reward_model.params.use_batch_inference=false")
    if args.devices:
        devices = "auto" if args.devices == "auto" else [d.strip() for d in args.devices.split(",") if d.strip()]
        overrides.append(f"editing.devices={json.dumps(devices)}")
        overrides.append(f"reward_model.devices={json.dumps(devices)}")
    return overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # the reward server (editjudge.serve): its own flags
        from .serve import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["agree"]:  # a judge's agreement with people or another judge (editjudge.trust): its own flags
        from .trust.agree_cli import main as agree_main

        return agree_main(argv[1:])
    if argv[:1] == ["canary"]:  # make or check a drift canary (editjudge.trust.canary_cli)
        from .trust.canary_cli import main as canary_main

        return canary_main(argv[1:])
    if argv[:1] == ["probe"]:  # the judge's probes (editjudge.trust.probe_cli): its own flags
        from .trust.probe_cli import main as probe_main

        return probe_main(argv[1:])
    if argv[:1] == ["pairwise"]:  # pairwise verdicts of a run's editors (editjudge.trust.pairwise_run): its own flags
        from .trust.pairwise_run import main as pairwise_main

        return pairwise_main(argv[1:])
    args = build_parser().parse_args(argv)
    rank = f" [rank {os.environ['RANK']}]" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s %(levelname)s{rank} %(name)s: %(message)s")
    install_log_redaction()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        # The checks that need no torch first: their mistakes come within a second, after the plan.
        config, problems = read_config(args.config, overrides_from_args(args))
        if config is not None and rank0:
            from .plan import plan_lines

            print("\n".join(plan_lines(config, stage=args.stage, overwrite=args.overwrite, export=args.export,
                                       source=args.config, valid=not problems)), file=sys.stderr, flush=True)
        if problems:
            print(ConfigError(args.config, problems), file=sys.stderr)
            print("(the models and the devices are checked once these are fixed)", file=sys.stderr)
            return 2
        if args.canary_max_drift is not None and not args.canary:
            problems.append("--canary-max-drift needs --canary FILE")
        if args.canary_max_drift is not None and not args.canary_max_drift >= 0:
            problems.append(f"--canary-max-drift: expected a number >= 0, got {args.canary_max_drift}")
        canary = None
        if args.canary:  # a missing or corrupt canary (or a changed image) is a configuration error, before any work
            from .trust.canary import CanaryError, load_canary

            try:
                canary = load_canary(args.canary)
            except CanaryError as exc:
                problems.append(str(exc))
            if args.stage in ("edit", "report") and rank0:
                print(f"note: the canary is checked at the start of the score stage; --stage {args.stage} has none",
                      file=sys.stderr)
        if problems:
            print(ConfigError(args.config, problems), file=sys.stderr)
            return 2
        register_judge_key(config)
        from .progress import Steps

        with Steps("checking the models and devices", "checks") if rank0 else contextlib.nullcontext() as steps:
            problems = model_problems(config, steps)
        if problems:
            raise ConfigError(args.config, problems)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    from .checks import all_failed
    from .models.reward.remote import JudgeServerError
    from .parallel import WorkerError
    from .pipeline import PipelineError, run
    from .report import format_table
    from .trust.canary import CanaryDrift

    try:
        result = run(config, stage=args.stage, overwrite=args.overwrite, export=args.export,
                     canary=canary, canary_max_drift=args.canary_max_drift)
    except (BenchmarkError, PipelineError, ValueError) as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 2
    except (WorkerError, JudgeServerError, CanaryDrift) as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
    if result:
        print(format_table(result["records"], result["floor"], languages=result.get("languages")))
        for name, path in result["files"].items():
            print(f"{name}: {path}")
    failed = all_failed(config, args.stage) if int(os.environ.get("RANK", "0")) == 0 else None
    if failed:
        print(redact(f"error: {failed}"), file=sys.stderr)
        return 1
    return 0
