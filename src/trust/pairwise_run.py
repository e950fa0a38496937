"""``editjudge pairwise``: every pair of a run's editors, item by item, as pairwise verdicts.

    editjudge pairwise --config config.yaml                          # the configured judge, both orders
    editjudge pairwise --config config.yaml --editors a,b,c
    editjudge pairwise --config config.yaml --from-scores --margin 1  # verdicts from OUT/scores.jsonl

Judged (the default): for each item and each pair of editors (A, B) in the config's order, the configured
judge (``reward.judge.build_judge``, one replica on the first judge device) sees the source, then A, then
B, and answers one of the four verdicts in ``[[...]]``; then again with B shown before A. The edits are the
run's (``OUT/edits/manifest.jsonl``): run the edit stage first. ``--from-scores``: verdicts from the two
editors' pointwise scores (``OUT/scores.jsonl``) with a margin, no judge. ``editjudge.trust.pairwise``
has the rules and formulas. With ``reward_model.params.score_mode: logits`` the judge is asked for the
letter of the better edit instead and P("A"), P("B") are read from its next-token distribution in both
orders (the transformers judge from its logits, a vLLM or API judge from ``top_logprobs``):
``editjudge.trust.pairwise_logits`` has the debiased probability, the verdict (``--tie-band``) and the
figures.

Writes ``OUT/pairwise.jsonl`` (one line per item and editor pair, see ``record``) and
``OUT/pairwise_summary.json`` (``pairwise.summarize``). Each line carries ``settings``, the hash of
everything that can change its verdict (the judge's identity and resolved settings, the prompt, the
parser's version; or the margin and the good threshold), and ``inputs``, the hash of what the judge saw
(instruction, source and both edits' SHA-1). A rerun keeps judged lines of the same settings and inputs
and judges the rest; lines of other settings (another judge, prompt, or the other mode) move to
``OUT/pairwise.previous.jsonl``, from where a later run with those settings takes them back.

Exit status: 0 done; 1 the judge failed to load or a request failed for good (the lines say which; a
rerun redoes them); 2 invalid configuration, flags, or a run without its edits or scores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path

from ..files import write_atomic
from ..jsonl import append_jsonl, read_jsonl, write_jsonl_atomic
from ..layout import Layout
from ..resume import digest
from . import pairwise

logger = logging.getLogger(__name__)

# Our own words, in the shape GenAI-Bench's pairwise judges use: the source, edit A, edit B, then the
# question and the four verdicts in double brackets. Changing either text changes the settings hash.
SYSTEM_PROMPT = "You compare two edits of one image, made with the same instruction, and pick the better one."
USER_PROMPT = (
    "The first image is the source. The second image is edit A and the third is edit B; both were made "
    'from the source with this instruction: "{instruction}"\n'
    "Which edit carries out the instruction better, keeps what the instruction does not ask to change, "
    "and looks more natural? End your answer with exactly one verdict: [[A>B]] if A is better, [[B>A]] "
    "if B is better, [[A=B=Good]] if both are equally good, [[A=B=Bad]] if both are equally bad."
)
PARSER_VERSION = 1  # raise when parse_verdict reads answers differently
DEFAULT_TIE_BAND = 0.05  # logits mode: a debiased probability within 0.5 +- this is a tie (pairwise_logits)
DEFAULT_MIN_MASS = 1e-6  # logits mode: at most this on the two letters is no answer (logits.NO_SCORE_MASS)


class UsageError(ValueError):
    """A mistake in the flags or the configuration for this command: exit status 2 before any work."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editjudge pairwise", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="the run's YAML configuration (its output_dir is read)")
    parser.add_argument("--editors", help="comma-separated editor names, at least two (default: every editor)")
    parser.add_argument("--from-scores", action="store_true",
                        help="verdicts from the pointwise scores in OUT/scores.jsonl, no judge")
    parser.add_argument("--margin", type=float,
                        help="--from-scores: a score difference above this is a win (default: 5%% of the score "
                             "range, 0.5 on 0-10)")
    parser.add_argument("--good-threshold", type=float,
                        help="--from-scores: a tie is A=B=Good when both scores are at least this (default: the "
                             "middle of the score range, 5 on 0-10)")
    parser.add_argument("--tie-band", type=float,
                        help="reward_model.params.score_mode logits: a debiased probability within 0.5 +- this is a "
                             f"tie (default {DEFAULT_TIE_BAND:g})")
    parser.add_argument("--min-letter-mass", type=float,
                        help='reward_model.params.score_mode logits: an order whose P("A") + P("B") is at most this '
                             f"has no probability (default {DEFAULT_MIN_MASS:g})")
    parser.add_argument("--output-dir", help="the run's output folder (overrides output_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key, e.g. --set reward_model.params.max_new_tokens=128 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="judge every pair again")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def editor_pairs(config, names: str | None) -> list[tuple[str, str]]:
    """Every pair of the chosen editors, in the config's order (A before B)."""
    known = [e.name for e in config.editing.editors]
    chosen = known if names is None else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise UsageError(f"--editors: {unknown} not in the config's editors {known}")
    chosen = [n for n in known if n in chosen]
    if len(chosen) < 2:
        raise UsageError(f"pairwise needs at least two editors, got {chosen}")
    return list(itertools.combinations(chosen, 2))


def record(item_id: str, category: str | None, a: str, b: str, source: str, settings: str, **fields) -> dict:
    """One line of ``pairwise.jsonl``: the pair, its verdict (``pairwise.combine`` fields), where it came
    from (``source``: ``pairwise`` judged, ``pointwise`` from scores), the margin (pointwise) and the
    judge's raw answers or the scores (``raw``); ``error`` when the pair could not be judged."""
    line = {"item_id": item_id, "category": category, "a": a, "b": b, "verdict": None, "forward": None,
            "backward": None, "consistent": None, "source": source, "margin": None, "raw": {},
            "settings": settings, "inputs": None, "error": None}
    line.update(fields)
    return line


# ------------------------------------------------------------------ from pointwise scores


def pointwise_records(layout: Layout, pairs: list[tuple[str, str]], margin: float, good: float) -> tuple[list, str]:
    """Lines from ``OUT/scores.jsonl``: each item scored for both editors of a pair gets their verdict."""
    if not layout.scores.exists():
        raise UsageError(f"{layout.scores} does not exist: run the score stage first (--stage score)")
    settings = digest({"source": "pointwise", "margin": margin, "good": good})
    scores, items = {}, {}
    for line in read_jsonl(layout.scores):
        scores[(line.get("editor"), line.get("item_id"))] = line
        items.setdefault(line.get("item_id"), line.get("category"))
    records = []
    for item_id, category in items.items():
        for a, b in pairs:
            score_a, score_b = (scores.get((e, item_id), {}).get("score") for e in (a, b))
            missing = [e for e, s in ((a, score_a), (b, score_b)) if s is None]
            records.append(record(item_id, category, a, b, "pointwise", settings, margin=margin,
                                  verdict=pairwise.pointwise_verdict(score_a, score_b, margin, good),
                                  raw={"score_a": score_a, "score_b": score_b},
                                  error=f"no score for {', '.join(missing)}" if missing else None))
    return records, settings


# ------------------------------------------------------------------ judged


def logits_mode(config) -> bool:
    """Whether the judge is asked for a preference probability (``score_mode: logits``), not a verdict."""
    return config.reward_model.params.get("score_mode", "generate") == "logits"


def judged_settings(config, device, tie_band: float | None = None, min_mass: float | None = None) -> dict:
    """What can change a judged verdict: the judge's scoring identity (its rubric aside: the pairwise
    prompt replaces it), what the device resolves (``dtype: auto``), the prompt and the parser; in logits
    mode the letter prompt, its prefill and letters, the tie band and the least letter mass instead of the
    parser."""
    from ..models.reward.judge import resolved_settings, scoring_identity

    identity = scoring_identity(config.reward_model)
    identity.pop("rubric", None)
    settings = {"source": "pairwise", "judge": identity, "resolved": resolved_settings(config.reward_model, device),
                "prompt": {"system": SYSTEM_PROMPT, "user": USER_PROMPT}, "parser": PARSER_VERSION}
    if logits_mode(config):
        from . import pairwise_logits

        choices = pairwise_logits.CHOICES
        settings.update(mode="logits", parser=None, tie_band=tie_band, min_mass=min_mass, prompt={
            "system": SYSTEM_PROMPT, "user": pairwise_logits.USER_PROMPT, "prefix": choices.prefix,
            "choices": list(choices.texts)})
    return settings


def judge_problems(config) -> list[str]:
    """Why the configured judge cannot give verdicts (before it loads)."""
    from ..models.reward import reward_file_problems

    from ..models.reward.judge import judge_class

    params = config.reward_model.params
    problems = []
    if logits_mode(config) and not getattr(judge_class(config.reward_model), "reads_choices", False):
        problems.append(f"reward_model.params.score_mode: the {config.reward_model.type!r} judge cannot give a "
                        "preference probability (logits: next-token probabilities of given letters); use "
                        "score_mode: generate for its verdicts")
    sampling = params.get("sampling") or {}
    if isinstance(sampling, dict) and int(sampling.get("num_samples", 1) or 1) > 1:
        problems.append("reward_model.params.sampling.num_samples: several samples are averaged into a score; "
                        "a verdict is not a number to average (use num_samples: 1)")
    if params.get("response_format", "none") != "none" and not logits_mode(config):
        problems.append("reward_model.params.response_format: a verdict is text ending in [[...]], not a JSON "
                        "object; use response_format: none")
    problems += [f"reward_model.params.{p}" for p in reward_file_problems(config.reward_model.type, dict(params))]
    return problems


def planned(config, layout: Layout, pairs, settings: str) -> list[tuple[dict, tuple | None]]:
    """Each item and pair: its line so far (an error, or no verdict yet) and what the judge is to see
    (source, A's edit, B's edit, instruction), None where it cannot be judged."""
    from ..resume import source_hasher
    from ..stage_common import load_items

    if not layout.manifest.exists():
        raise UsageError(f"{layout.manifest} does not exist: run the edit stage first (--stage edit)")
    edits = {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.manifest)}
    source_sha1 = source_hasher()
    plan = []
    for item in load_items(config):
        for a, b in pairs:
            line = record(item.id, item.category, a, b, "pairwise", settings)
            found = [edits.get((e, item.id)) for e in (a, b)]
            bad = [f"{e}: {'no edit recorded' if r is None else 'edit failed: ' + str(r.get('error'))}"
                   for e, r in zip((a, b), found) if r is None or r.get("error") or not r.get("image")]
            if item.problem or bad:
                line["error"] = f"invalid item: {item.problem}" if item.problem else "; ".join(bad)
                plan.append((line, None))
                continue
            line["inputs"] = digest({"instruction": item.instruction, "source_sha1": source_sha1(item.image),
                                     "a_sha1": found[0].get("sha1"), "b_sha1": found[1].get("sha1")})
            plan.append((line, (item.image, layout.out / found[0]["image"], layout.out / found[1]["image"],
                                item.instruction)))
    return plan


def _both_orders(chunk: list[tuple[dict, tuple]], user_prompt: str) -> tuple[list, list, list]:
    """What the judge is shown for each pair of ``chunk``, in both orders: (source, A, B) then (source, B,
    A); the prompts with the instruction filled in; the ids in the judge's batch log lines."""
    from ..models.reward.prompts import fill_prompt

    shown, users, ids = [], [], []
    for line, (source, edit_a, edit_b, instruction) in chunk:
        shown += [(source, edit_a, edit_b), (source, edit_b, edit_a)]
        users += [fill_prompt(user_prompt, instruction)] * 2
        ids += [f"{line['item_id']}:{line['a']}|{line['b']}", f"{line['item_id']}:{line['b']}|{line['a']}"]
    return shown, users, ids


def _finished(line: dict, combined: dict, forward, backward) -> dict:
    """A pair's line: its combined verdict, both raw answers, and the error of an order that got no answer
    at all (a request that failed for good, an unreadable image: a rerun redoes the pair)."""
    line = dict(line, **combined)
    line["raw"] = {"forward": forward.raw_output, "backward": backward.raw_output,
                   "forward_error": forward.error, "backward_error": backward.error}
    failed = [f"{order}: {r.error}" for order, r in (("forward", forward), ("backward", backward))
              if r.raw_output is None and r.error]
    line["error"] = "; ".join(failed) or None
    return line


def judge_chunk(model, chunk: list[tuple[dict, tuple]]) -> list[dict]:
    """Both orders of each pair of ``chunk`` in one call of the judge; the finished lines."""
    from ..models.reward.judge import judge_shown

    shown, users, ids = _both_orders(chunk, USER_PROMPT)
    results = judge_shown(model, shown, SYSTEM_PROMPT, users, pairwise.VerdictParser(), item_ids=ids)
    done = []
    for k, (line, _) in enumerate(chunk):
        forward, backward = results[2 * k], results[2 * k + 1]
        combined = pairwise.combine(pairwise.verdict_of(forward), pairwise.verdict_of(backward))
        done.append(_finished(line, combined, forward, backward))
    return done


def judge_chunk_logits(model, chunk: list[tuple[dict, tuple]], tie_band: float, min_mass: float) -> list[dict]:
    """Both orders of each pair of ``chunk`` in one call, logits mode: P("A") and P("B") after the letter
    prompt, combined by ``pairwise_logits.combine_probabilities``; the finished lines."""
    from ..models.reward.judge import judge_choices
    from . import pairwise_logits

    shown, users, ids = _both_orders(chunk, pairwise_logits.USER_PROMPT)
    results = judge_choices(model, shown, SYSTEM_PROMPT, users, pairwise_logits.letters(min_mass), item_ids=ids)
    done = []
    for k, (line, _) in enumerate(chunk):
        forward, backward = results[2 * k], results[2 * k + 1]
        first = [r.score if r.ok else None for r in (forward, backward)]  # P(first shown), renormalised
        combined = pairwise_logits.combine_probabilities(first[0], first[1], tie_band)
        done.append(_finished(line, combined, forward, backward))
    return done


def judged_records(config, layout: Layout, pairs, overwrite: bool,
                   tie_band: float | None = None, min_mass: float | None = None) -> tuple[list, str, bool]:
    """Every pair judged in both orders (reusing lines judged before under the same settings and inputs);
    the lines in plan order, the settings hash, and whether any request failed for good."""
    from ..models.reward.judge import build_judge, judge_devices

    device = judge_devices(config.reward_model)[0]
    settings = digest(judged_settings(config, device, tie_band, min_mass))
    plan = planned(config, layout, pairs, settings)
    before = {} if overwrite else {
        (r.get("item_id"), r.get("a"), r.get("b"), r.get("inputs")): r
        for path in (layout.out / "pairwise.previous.jsonl", layout.out / "pairwise.jsonl") for r in read_jsonl(path)
        if r.get("settings") == settings and r.get("source") == "pairwise" and not r.get("error")}
    lines, todo, reused = [], [], []
    for line, inputs in plan:
        kept = before.get((line["item_id"], line["a"], line["b"], line["inputs"])) if inputs else None
        lines.append(kept or line)
        if kept is not None:
            reused.append(kept)
        elif inputs is not None:
            todo.append((len(lines) - 1, line, inputs))
    start_file(layout, reused)
    logger.info("pairwise: %d pairs, %d to judge in both orders on %s (%d kept from before)", len(plan), len(todo),
                device, len(reused))
    if todo:
        # quiet: no progress bar per chunk; a line per chunk says how far the command is.
        model, _ = build_judge(config.reward_model, device, output_dir=str(layout.out), quiet=True)
        try:
            size = max(1, (model.batch_size if isinstance(model.batch_size, int) else 8) * 2)
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                pending = [(line, inputs) for _, line, inputs in chunk]
                done = (judge_chunk_logits(model, pending, tie_band, min_mass) if logits_mode(config)
                        else judge_chunk(model, pending))
                append_jsonl(layout.out / "pairwise.jsonl", done)  # a killed run keeps what is judged
                for (position, _, _), line in zip(chunk, done):
                    lines[position] = line
                logger.info("pairwise: %d of %d pairs judged in both orders", min(start + size, len(todo)), len(todo))
        finally:
            model.close()
    return lines, settings, any(line.get("error") and line.get("inputs") for line in lines)


# ------------------------------------------------------------------ files


def start_file(layout: Layout, kept: list[dict]) -> None:
    """``pairwise.jsonl`` holds ``kept`` only (appended to as pairs are judged); every other judged line
    moves to ``pairwise.previous.jsonl`` (one line per item, pair, settings and inputs: the latest). Lines
    from scores and lines of pairs that could not be judged are not kept: they cost nothing to redo."""
    current, previous = layout.out / "pairwise.jsonl", layout.out / "pairwise.previous.jsonl"
    old = read_jsonl(previous) + read_jsonl(current)
    keep = {json.dumps(line, sort_keys=True) for line in kept}
    moved = {}
    for line in old:
        if json.dumps(line, sort_keys=True) not in keep and line.get("source") == "pairwise" and not line.get("error"):
            moved[(line.get("item_id"), line.get("a"), line.get("b"), line.get("settings"), line.get("inputs"))] = line
    write_jsonl_atomic(previous, moved.values())
    write_jsonl_atomic(current, kept)


def answer_counts(lines: list[dict]) -> dict:
    """Single-order answers: with a verdict, answered without one (unparseable), and not answered."""
    counts = {"verdict": 0, "unparseable": 0, "failed": 0}
    for line in lines:
        raw = line.get("raw") or {}
        for order in ("forward", "backward"):
            if order not in raw:
                continue
            counts["verdict" if line.get(order) is not None else "unparseable" if raw[order] is not None
                   else "failed"] += 1
    return counts


def write_outputs(layout: Layout, lines: list[dict], summary: dict) -> dict[str, Path]:
    paths = {"pairwise": layout.out / "pairwise.jsonl", "summary": layout.out / "pairwise_summary.json"}
    write_jsonl_atomic(paths["pairwise"], lines)
    write_atomic(paths["summary"], json.dumps(summary, indent=2, ensure_ascii=False) + "\n", durable=True)
    return paths


def summary_lines(summary: dict) -> list[str]:
    consistency, bias = summary["order_consistency"], summary["position_bias"]
    out = [f"{summary['pairs']} pairs ({summary['source']}): "
           + ", ".join(f"{v} {n}" for v, n in summary["verdicts"].items())]
    if summary["source"] == "pairwise":
        out.append("order consistency: " + ("n/a" if consistency["rate"] is None else
                                            f"{consistency['rate']:.3f} ({consistency['consistent']}/{consistency['compared']})"))
        if summary.get("score_mode") == "logits":
            out.append("position bias: " + ("n/a" if bias["value"] is None else
                                            f"{bias['value']:+.3f} (mean P(first shown) - 0.5 over {bias['pairs']} pairs)"))
        else:
            out.append("position bias: " + ("n/a" if bias["value"] is None else
                                            f"{bias['value']:+.3f} ({bias['first_preferred']}/{bias['decisive']} picked the first shown)"))
    else:
        out.append(f"margin {summary['margin']:g}, good threshold {summary['good_threshold']:g}")
    for row in summary["win_rates"]:
        rate = "n/a" if row["a_win_rate"] is None else f"{row['a_win_rate']:.3f}"
        mean = row.get("mean_probability")
        out.append(f"{row['a']} vs {row['b']}: {row['a_wins']}-{row['b_wins']}, {row['ties']} ties, "
                   f"{row['null']} without a verdict; {row['a']} win rate {rate}"
                   + ("" if mean is None else f", mean P({row['a']} better) {mean:.3f}"))
    return out


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, read_config
    from ..redaction import register_judge_key

    overrides = list(args.set) + ([f"output_dir={json.dumps(args.output_dir)}"] if args.output_dir else [])
    config, problems = read_config(args.config, overrides)
    if problems or config is None:
        print(ConfigError(args.config, problems or ["the configuration could not be read"]), file=sys.stderr)
        return 2
    register_judge_key(config)  # the judge API's key: never in what this command prints
    layout = Layout(Path(config.output_dir))
    pairs = editor_pairs(config, args.editors)
    if args.from_scores:
        score_range = config.reward_model.params.get("score_range", (0, 10))
        margin = pairwise.default_margin(score_range) if args.margin is None else args.margin
        good = pairwise.default_good(score_range) if args.good_threshold is None else args.good_threshold
        if margin < 0:
            raise UsageError(f"--margin must be 0 or more, got {margin:g}")
        lines, settings = pointwise_records(layout, pairs, margin, good)
        start_file(layout, [])
        failed, extra = False, {"margin": margin, "good_threshold": good}
    else:
        if args.margin is not None or args.good_threshold is not None:
            raise UsageError("--margin and --good-threshold are for --from-scores")
        problems = judge_problems(config)
        if problems:
            print(ConfigError(args.config, problems), file=sys.stderr)
            return 2
        if (args.tie_band is not None or args.min_letter_mass is not None) and not logits_mode(config):
            raise UsageError("--tie-band and --min-letter-mass are for reward_model.params.score_mode: logits")
        tie_band = min_mass = None
        if logits_mode(config):
            tie_band = DEFAULT_TIE_BAND if args.tie_band is None else args.tie_band
            min_mass = DEFAULT_MIN_MASS if args.min_letter_mass is None else args.min_letter_mass
            if not 0 <= tie_band < 0.5:
                raise UsageError(f"--tie-band must be at least 0 and below 0.5, got {tie_band:g}")
            if not 0 <= min_mass < 1:
                raise UsageError(f"--min-letter-mass must be at least 0 and below 1, got {min_mass:g}")
        lines, settings, failed = judged_records(config, layout, pairs, args.overwrite, tie_band, min_mass)
        extra = {"margin": None, "answers": answer_counts(lines)}
    summary = pairwise.summarize(lines, source="pointwise" if args.from_scores else "pairwise", settings=settings,
                                 editors=list(dict.fromkeys(e for pair in pairs for e in pair)), **extra)
    if not args.from_scores and logits_mode(config):
        from . import pairwise_logits

        summary = pairwise_logits.logits_summary(summary, lines, tie_band, min_mass)
    paths = write_outputs(layout, lines, summary)
    print("\n".join(summary_lines(summary)))
    for name, path in paths.items():
        print(f"{name}: {path}")
    if failed:
        print("error: some pairs got no answer (their lines say why); rerun to judge them", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    from ..benchmark import BenchmarkError
    from ..models.reward.remote import JudgeServerError
    from ..redaction import install_log_redaction, redact

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    try:
        return run(args)
    except (UsageError, BenchmarkError) as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 2
    except JudgeServerError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
