"""editjudge: benchmark instruction-based image editors with a Qwen3-VL judge.

    python main.py --config config.yaml
    python main.py --config configs/demo.yaml --limit 8 --batch-size 2
    python main.py --config config.yaml --set reward_model.params.score_mode=logits

Exit status: 0 done, 2 invalid configuration or benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from src.benchmark import BenchmarkError
from src.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Score a benchmark with a Qwen3-VL judge.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument("--output-dir", help="where results go (overrides output_dir)")
    parser.add_argument("--limit", type=int, help="score only the first N benchmark items")
    parser.add_argument("--batch-size", type=int, help="reward-model batch size (overrides reward_model.params.batch_size)")
    parser.add_argument("--no-batch", action="store_true", help="score one image at a time (use_batch_inference: false)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key, e.g. --set reward_model.params.max_new_tokens=32 (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.set)
    if args.output_dir:
        overrides.append(f"output_dir={json.dumps(args.output_dir)}")
    if args.limit is not None:
        overrides.append(f"benchmark.limit={args.limit}")
    if args.batch_size is not None:
        overrides.append(f"reward_model.params.batch_size={args.batch_size}")
    if args.no_batch:
        overrides.append("reward_model.params.use_batch_inference=false")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    from src.pipeline import format_summary, run

    try:
        summary = run(config)
    except BenchmarkError as exc:
        print(f"benchmark error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"results: {config.output_dir}/scores.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
