"""``editjudge canary``: make a drift canary from a scored run, or check one now (``editjudge.trust.canary``).

    editjudge canary make --config config.yaml --from outputs/run1 --n 8 canary.json
    editjudge canary check --config config.yaml canary.json [--max-drift 0.5]

``make`` picks N scored items of the run (spread over the score range), copies their sources and edits
into ``<file stem>-images/`` beside the file and records their scores, sha256 and the judge's identity.
``check`` rescores them with the configuration's judge, as ``--canary`` does at the start of a run.
Exit status: 0 done (``check``: whatever the drift, unless over ``--max-drift``: 1), 2 a configuration,
canary or run-folder mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..benchmark import BenchmarkError
from ..config import ConfigError, load_config
from ..redaction import install_log_redaction, redact, register_judge_key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editjudge canary", description="Make or check a drift canary: a few "
                                     "scored items rescored before a run, to catch a judge that changed.",
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="write a canary file from a scored run")
    make.add_argument("--from", dest="run_dir", required=True, metavar="OUT", help="the scored run's folder")
    make.add_argument("--n", type=int, default=8, help="how many items (default 8)")
    check = commands.add_parser("check", help="rescore a canary with the configuration's judge")
    check.add_argument("--max-drift", type=float, help="exit status 1 when the mean absolute drift is over this")
    for sub in (make, check):
        sub.add_argument("--config", required=True, help="YAML configuration file (its reward_model is the judge)")
        sub.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                         help="override any config key (repeatable)")
        sub.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        sub.add_argument("file", help="the canary file (JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .canary import CanaryError, check, load_canary, make_canary, summary_lines

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    try:
        config = load_config(args.config, list(args.set), models=args.command == "check")
        register_judge_key(config)
        if args.command == "make":
            data = make_canary(config, Path(args.run_dir), args.n, Path(args.file))
            print(f"canary {args.file}: {len(data['items'])} items (scores "
                  f"{', '.join(format(e['score'], 'g') for e in data['items'])}), judge settings "
                  f"{data['judge']['settings_hash'][:12]}, images in {Path(args.file).stem}-images/")
            return 0
        canary = load_canary(args.file)
    except (ConfigError, CanaryError, BenchmarkError) as exc:
        print(redact(str(exc)), file=sys.stderr)
        return 2
    result = check(config, canary, args.max_drift)
    print("\n".join(summary_lines(result)))
    print(json.dumps({k: result[k] for k in ("mean_abs_diff", "max_abs_diff", "n_scored")}))
    return 1 if result["over"] else 0
