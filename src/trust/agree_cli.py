"""``editjudge agree``: how far a judge agrees with people, or with another judge.

    editjudge agree genai-bench/gemini-1.5-pro/pairwise.jsonl          # GenAI-Bench: votes and its judge
    editjudge agree votes.csv out/                     # people's pairwise votes vs OUT/pairwise.jsonl
    editjudge agree mos.jsonl out/                     # mean opinion scores vs OUT/scores.jsonl
    editjudge agree out_judge1/ out_judge2/ --json agreement.json   # judge vs judge on the same edits

What the first argument holds decides the comparison (``editjudge.trust.labels.kind_of``): pairwise
labels (a preference column) are compared with pairwise verdicts, mean opinion scores (a mos column)
with a judge's scores, and a run's scores (an output folder or its scores.jsonl) with another run's.
The figures and their meaning: ``editjudge.trust.agreement`` and ``editjudge.trust.judges``.

Exit status: 0 done; 2 an input cannot be read, has an unknown vote (the line is named), or has nothing
in common with the other.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..files import write_atomic
from .agreement import JUDGE_CLASSES, join_pairs, pair_agreement, score_agreement
from .bootstrap import LEVEL, REPS, SEED
from .judges import compare_runs
from .labels import VERDICTS, AgreeInputError, kind_of, read_mos, read_pair_labels, read_pair_verdicts, read_scores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editjudge agree", description="How far a judge agrees with people or "
                                     "with another judge.", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("labels", help="people's pairwise labels (GenAI-Bench pairwise.jsonl, or JSONL/CSV of item, "
                                       "A, B, preference), mean opinion scores (item[, editor], mos), or a first "
                                       "judge's run (output folder or scores.jsonl)")
    parser.add_argument("verdicts", nargs="?",
                        help="the judge to compare: an output folder, its pairwise.jsonl or its scores.jsonl "
                             "(optional for GenAI-Bench files, which hold a judge's verdicts)")
    parser.add_argument("--json", metavar="FILE", help="write every figure (point, low, high, n) to FILE")
    parser.add_argument("--reps", type=int, default=REPS, help=f"bootstrap resamples (default {REPS})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"bootstrap seed (default {SEED})")
    return parser


def compare(labels: str, verdicts: str | None, reps: int = REPS, seed: int = SEED) -> dict:
    """Every figure of ``editjudge agree LABELS [VERDICTS]`` as one dict (what ``--json`` writes)."""
    kind = kind_of(labels)
    head = {"labels": str(labels), "verdicts": None if verdicts is None else str(verdicts),
            "bootstrap": {"reps": reps, "seed": seed, "level": LEVEL}}
    if kind != "pairs" and verdicts is None:
        what = "a second run" if kind == "run" else "a judge's run (output folder or scores.jsonl)"
        raise AgreeInputError(f"{labels}: give {what} to compare with")
    if kind == "pairs":
        people = read_pair_labels(labels)
        joined, join = join_pairs(people, None if verdicts is None else read_pair_verdicts(verdicts))
        judge = "model_vote in the labels file" if verdicts is None else str(verdicts)
        return {"mode": "pairs", "source": people.source, "judge": judge, **head, "join": join,
                **pair_agreement(joined, reps, seed)}
    if kind == "mos":
        return {"mode": "mos", **head, **score_agreement(read_mos(labels), read_scores(verdicts), reps, seed)}
    return {"mode": "judges", **head, **compare_runs(read_scores(labels), read_scores(verdicts), reps, seed)}


def _value(fig: dict, percent: bool = False) -> str:
    def number(x):
        if x is None:
            return "n/a"
        return f"{100 * x:.2f}" if percent else f"{x:.3f}"
    unit = "%" if percent and fig["point"] is not None else ""
    return f"{number(fig['point'])}{unit} [{number(fig['low'])}, {number(fig['high'])}]"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _join_line(join: dict, unit: str) -> str:
    line = (f"{unit}: {join['labels']} in the first file, {join['verdicts']} in the second, {join['common']} "
            f"compared; {join['only_in_labels']} only in the first, {join['only_in_verdicts']} only in the second")
    for key, what in (("judge_failed", "failed by the judge"), ("failed_under_either", "failed under either judge"),
                      ("category_differs", "with another category in the second run")):
        if join.get(key):
            line += f"; {join[key]} {what} (left out)" if key != "category_differs" else f"; {join[key]} {what}"
    return line


def format_result(result: dict) -> str:
    """The terminal table of a ``compare`` result."""
    level = f"{100 * result['bootstrap']['level']:.0f}%"
    lines = []
    if result["mode"] == "pairs":
        figs = result["figures"]
        lines.append(f"people's votes: {result['labels']} ({result['source']}); judge: {result['judge']}")
        join = result["join"] if result["verdicts"] else None
        lines.append((_join_line(join, "pairs") if join else f"pairs: {result['join']['common']}, votes and verdicts "
                      f"in one file") + f"; {result['unparseable']} unparseable verdicts (counted wrong)")
        lines += [""] + _table([["figure", f"value [{level} interval]", "n"],
                                ["accuracy (4 classes)", _value(figs["accuracy"], True), str(figs["accuracy"]["n"])],
                                ["accuracy without ties", _value(figs["accuracy_without_ties"], True),
                                 str(figs["accuracy_without_ties"]["n"])],
                                ["Cohen's kappa", _value(figs["kappa"]), str(figs["kappa"]["n"])]])
        confusion = result["confusion"]
        lines += ["", "people (rows) x judge (columns):"]
        lines += _table([["", *JUDGE_CLASSES]] + [[vote, *(str(confusion[vote][v]) for v in JUDGE_CLASSES)]
                                                   for vote in VERDICTS])
    elif result["mode"] == "mos":
        figs = result["figures"]
        lines.append(f"mean opinion scores: {result['labels']}; judge: {result['verdicts']}")
        lines.append(_join_line(result["join"], "edits"))
        lines += [""] + _table([["figure", f"value [{level} interval]", "edits", "items"]] +
                               [[name, _value(figs[key]), str(figs[key]["n"]), str(figs[key]["n_items"])]
                                for name, key in (("Spearman", "spearman"), ("Kendall tau-b", "kendall"))])
    else:
        lines += _judges_lines(result, level)
    return "\n".join(lines)


def _judges_lines(result: dict, level: str) -> list[str]:
    lines = [f"judge A: {result['labels']}; judge B: {result['verdicts']}", _join_line(result["join"], "edits"), ""]
    rows = [["scores", f"Spearman [{level}]", f"Kendall tau-b [{level}]", "edits", "items"]]
    for name, figs in (("overall", result["overall"]), *result["categories"].items()):
        rows.append([name, _value(figs["spearman"]), _value(figs["kendall"]), str(figs["spearman"]["n"]),
                     str(figs["spearman"]["n_items"])])
    lines += _table(rows) + [""]
    rows = [["editor", f"macro A [{level}]", "rank A", f"macro B [{level}]", "rank B"]]
    for editor, row in sorted(result["editors"].items(), key=lambda kv: kv[1]["rank_a"]):
        rows.append([editor, _value(row["macro_a"]), str(row["rank_a"]), _value(row["macro_b"]), str(row["rank_b"])])
    lines += _table(rows)
    board = result["leaderboard"]
    lines += ["", f"leaderboard agreement over {board['n_editors']} editors: Spearman {_value(board['spearman'])}, "
                  f"Kendall tau-b {_value(board['kendall'])}"]
    flipped = [p for p in result["pairs"] if p["flipped"]]
    if not flipped:
        lines.append("the leaderboard does not change: every pair of editors keeps its order")
    else:
        lines.append(f"the leaderboard changes: {len(flipped)} of {len(result['pairs'])} editor pairs change order "
                     f"(bootstrap probability that the first is above the second, under A and under B):")
        for p in flipped:
            lines.append(f"  {p['first']} {p['order_a']} {p['second']} under A (p {p['p_first_above_a']:.2f}), "
                         f"{p['first']} {p['order_b']} {p['second']} under B (p {p['p_first_above_b']:.2f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps < 1:
        print("error: --reps must be at least 1", file=sys.stderr)
        return 2
    try:
        result = compare(args.labels, args.verdicts, args.reps, args.seed)
    except AgreeInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_result(result))
    if args.json:
        try:
            write_atomic(Path(args.json), json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
        print(f"json: {args.json}")
    return 0
