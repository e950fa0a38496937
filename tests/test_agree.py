"""``editjudge agree``: a judge against people's votes and scores, and against another judge.

The maths on small hand-computed inputs (and against scipy where it is installed); GenAI-Bench's
published image-editing accuracies reproduced from its released files by running the command."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from editjudge import aggregate
from editjudge.cli import main as cli_main
from editjudge.trust import correlation
from editjudge.trust.agree_cli import compare
from editjudge.trust.correlation import RankedPairs, kendall_tau_b, spearman
from tests.conftest import shared_data

GENAI = shared_data("genai-bench")
PUBLISHED = {"gemini-1.5-pro": 55.93, "llava": 26.12, "random": 25.9}  # GenAI-Bench README, image editing


def agree(capsys, *args) -> tuple[int, str, str]:
    code = cli_main(["agree", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- GenAI-Bench, reproduced -------------------------------------------------------------------------

@pytest.mark.skipif(not GENAI.is_dir(), reason=f"GenAI-Bench's released votes are not at {GENAI}")
@pytest.mark.parametrize("judge", sorted(PUBLISHED))
def test_genai_bench_published_image_editing_accuracy_is_reproduced(judge, tmp_path, capsys):
    out = tmp_path / "agree.json"
    code, printed, err = agree(capsys, GENAI / judge / "pairwise.jsonl", "--json", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    accuracy = result["figures"]["accuracy"]
    assert round(100 * accuracy["point"], 2) == PUBLISHED[judge]
    assert accuracy["n"] == 919 and result["join"]["common"] == 919
    assert accuracy["low"] < accuracy["point"] < accuracy["high"]
    assert f"{PUBLISHED[judge]:.2f}%" in printed


@pytest.mark.skipif(not GENAI.is_dir(), reason=f"GenAI-Bench's released votes are not at {GENAI}")
def test_a_bootstrap_interval_is_reproducible_and_its_seed_matters():
    path = GENAI / "gemini-1.5-pro" / "pairwise.jsonl"
    first, again, other = (compare(path, None, reps=300), compare(path, None, reps=300),
                            compare(path, None, reps=300, seed=1))
    assert first == again
    kappa, kappa_other = first["figures"]["kappa"], other["figures"]["kappa"]
    assert kappa["point"] == kappa_other["point"] and kappa["low"] != kappa_other["low"]
    for fig in first["figures"].values():
        assert fig["low"] <= fig["point"] <= fig["high"]


# --- people's pairwise votes against a run's verdicts ------------------------------------------------

def _votes(tmp_path, vote_of_p2="A"):
    labels = tmp_path / "labels.csv"
    rows = [("p1", "A"), ("p2", vote_of_p2), ("p3", "B"), ("p4", "B"), ("p5", "tie"), ("p6", "both_bad"), ("p7", "A")]
    labels.write_text("item,A,B,preference\n" + "".join(f"{i},e1,e2,{v}\n" for i, v in rows), encoding="utf-8")
    verdicts = [("p1", "e1", "e2", "A>B"), ("p2", "e2", "e1", "A>B"),  # p2 the other way round: e2 better
                ("p3", "e1", "e2", "B>A"), ("p4", "e1", "e2", None), ("p5", "e1", "e2", "A=B=Good"),
                ("p6", "e1", "e2", "A=B=Good"), ("p8", "e1", "e2", "A>B")]
    write_jsonl(tmp_path / "out" / "pairwise.jsonl",
                [{"item_id": i, "category": "c", "a": a, "b": b, "verdict": v, "raw": "..."} for i, a, b, v in verdicts])
    return labels


def test_pairwise_figures_match_a_hand_computation(tmp_path, capsys):
    """Votes A, A, B, B, tie, both_bad; verdicts A>B, B>A (p2's pair written swapped), B>A, unparseable,
    A=B=Good, A=B=Good. Right: p1, p3, p5 -> 3/6. Ties left out: p1..p4, right p1, p3 -> 2/4.
    kappa: p_o = 1/2; people's shares 2/6, 2/6, 1/6, 1/6, the judge's 1/6, 2/6, 2/6, 0 (and 1/6
    unparseable), p_e = (2 + 4 + 2 + 0) / 36 = 2/9, kappa = (1/2 - 2/9) / (7/9) = 5/14."""
    out = tmp_path / "agree.json"
    code, printed, err = agree(capsys, _votes(tmp_path), tmp_path / "out", "--json", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    figs = result["figures"]
    assert figs["accuracy"]["point"] == pytest.approx(0.5) and figs["accuracy"]["n"] == 6
    assert figs["accuracy_without_ties"]["point"] == pytest.approx(0.5) and figs["accuracy_without_ties"]["n"] == 4
    assert figs["kappa"]["point"] == pytest.approx(5 / 14)
    assert result["unparseable"] == 1
    assert result["confusion"]["A>B"] == {"A>B": 1, "B>A": 1, "A=B=Good": 0, "A=B=Bad": 0, "unparseable": 0}
    join = result["join"]
    assert (join["labels"], join["verdicts"], join["common"], join["only_in_labels"], join["only_in_verdicts"]) \
        == (7, 7, 6, 1, 1)
    assert join["examples_only_in_labels"] == ["item 'p7' (e1 vs e2)"]
    assert "50.00%" in printed and "1 only in the first" in printed


def test_an_unknown_vote_stops_with_its_line(tmp_path, capsys):
    code, _, err = agree(capsys, _votes(tmp_path, vote_of_p2="maybe"), tmp_path / "out")
    assert code == 2
    assert "labels.csv:3" in err and "'maybe'" in err


def test_no_pair_in_common_stops(tmp_path, capsys):
    labels = _votes(tmp_path)
    write_jsonl(tmp_path / "other" / "pairwise.jsonl",
                [{"item_id": "q1", "category": "c", "a": "e1", "b": "e2", "verdict": "A>B"}])
    code, _, err = agree(capsys, labels, tmp_path / "other")
    assert code == 2 and "no pair in common" in err


def test_unreadable_inputs_stop_with_a_message(tmp_path, capsys):
    (tmp_path / "plain.jsonl").write_text('{"item": "x", "colour": "red"}\n')
    code, _, err = agree(capsys, tmp_path / "plain.jsonl", tmp_path)
    assert code == 2 and "neither pairwise labels" in err
    (tmp_path / "torn.jsonl").write_text('{"item": "x", "preference": "A"}\n{"item": \n')
    code, _, err = agree(capsys, tmp_path / "torn.jsonl", tmp_path)
    assert code == 2 and "torn.jsonl:2" in err
    code, _, err = agree(capsys, _votes(tmp_path), tmp_path / "missing")
    assert code == 2 and "no such file or folder" in err


def test_genai_bench_layout_reads_its_judge_as_upstream_does(tmp_path):
    """Stand-in lines in GenAI-Bench's layout: ">>" counts as ">", anything else or null is unparseable."""
    rows = [{"idx": 0, "model_vote": "[[A>>B]]", "human_vote": "leftvote", "response": "first"},
            {"idx": 1, "model_vote": "[[B>A]]", "human_vote": "rightvote", "response": "second"},
            {"idx": 2, "model_vote": "[[A=B]]", "human_vote": "tievote", "response": "undecided"},
            {"idx": 3, "model_vote": None, "human_vote": "bothbad_vote", "response": "silent"}]
    result = compare(write_jsonl(tmp_path / "pairwise.jsonl", rows), None, reps=50)
    assert result["source"] == "genai-bench"
    assert result["figures"]["accuracy"]["point"] == pytest.approx(0.5)
    assert result["unparseable"] == 2


# --- rank correlations -------------------------------------------------------------------------------

def test_spearman_and_kendall_on_hand_computed_inputs(monkeypatch):
    # No ties: one swapped neighbour. rho = 1 - 6 * 2 / (4 * 15) = 0.8; tau = (5 - 1) / 6.
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # Ties: x ranks 1.5 1.5 3 4, y ranks 1 2.5 2.5 4: rho = 3.75 / 4.5; tau-b: C = 4, D = 0, one pair tied
    # in x and one in y: 4 / sqrt(5 * 5).
    assert spearman([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(3.75 / 4.5)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None
    assert aggregate.spearman is correlation.spearman  # the old name still works
    monkeypatch.setattr(correlation, "TABLE_CELLS", 0)  # Kendall by sorting, as for many distinct values
    monkeypatch.setattr(correlation, "TABLE_PER_UNIT", 0)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize("kendall_by", ["table", "sorting"])
def test_weighted_correlations_equal_those_of_the_expanded_sample(kendall_by, monkeypatch):
    """A resample is a weighting; its figures must be the figures of the repeated list (scipy if present).
    Kendall has two methods (a table for few distinct values, sorting for many): both are checked."""
    stats = pytest.importorskip("scipy.stats")
    monkeypatch.setattr(correlation, "TABLE_CELLS", 0 if kendall_by == "sorting" else 1 << 30)
    monkeypatch.setattr(correlation, "TABLE_PER_UNIT", 0)
    rng = random.Random(3)
    for _ in range(100):
        n = rng.randint(2, 25)
        x, y = [rng.randint(0, 4) for _ in range(n)], [rng.random() if rng.random() < 0.5 else rng.randint(0, 3)
                                                       for _ in range(n)]
        counts = [rng.randint(0, 3) for _ in range(n)]
        ex = [v for v, c in zip(x, counts) for _ in range(c)]
        ey = [v for v, c in zip(y, counts) for _ in range(c)]
        ranked = RankedPairs(x, y)
        rho, tau = ranked.spearman(np.array(counts)), ranked.kendall(np.array(counts))
        if len(set(ex)) < 2 or len(set(ey)) < 2:
            assert rho is None and tau is None
            continue
        assert rho == pytest.approx(stats.spearmanr(ex, ey).statistic, abs=1e-12)
        assert tau == pytest.approx(stats.kendalltau(ex, ey).statistic, abs=1e-12)
        assert rho == pytest.approx(spearman(ex, ey), abs=1e-12)


# --- mean opinion scores against a run's scores ------------------------------------------------------

def _scores(path, rows):
    return write_jsonl(path, [{"item_id": i, "category": c, "editor": e, "score": s, "raw_output": ""}
                              for i, c, e, s in rows])


def test_mean_opinion_scores_against_a_runs_scores(tmp_path, capsys):
    mos = tmp_path / "mos.csv"
    mos.write_text("item,editor,mos\n" + "".join(f"m{k},{e},{v}\n" for k, e, v in
                   [(1, "x", 4.5), (1, "y", 2.0), (2, "x", 3.5), (2, "y", 3.0), (3, "x", 1.0), (3, "y", 5.0),
                    (4, "x", 2.5)]), encoding="utf-8-sig")  # with a byte-order mark, as spreadsheets write
    judge = [("m1", "c", "x", 8), ("m1", "c", "y", 3), ("m2", "c", "x", 6), ("m2", "c", "y", 6),
             ("m3", "c", "x", 2), ("m3", "c", "y", 9), ("m4", "c", "x", None), ("m9", "c", "x", 1)]
    _scores(tmp_path / "run" / "scores.jsonl", judge)
    out = tmp_path / "agree.json"
    code, printed, err = agree(capsys, mos, tmp_path / "run", "--json", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    people, scored = [4.5, 2.0, 3.5, 3.0, 1.0, 5.0], [8, 3, 6, 6, 2, 9]
    assert result["figures"]["spearman"]["point"] == pytest.approx(spearman(people, scored))
    assert result["figures"]["kendall"]["point"] == pytest.approx(kendall_tau_b(people, scored))
    assert result["figures"]["kendall"]["n"] == 6 and result["figures"]["kendall"]["n_items"] == 3
    assert result["join"]["judge_failed"] == 1 and result["join"]["only_in_verdicts"] == 1
    assert "Kendall tau-b" in printed


def test_mean_opinion_scores_need_a_judge(tmp_path, capsys):
    mos = write_jsonl(tmp_path / "mos.jsonl", [{"item": "m1", "mos": 3.0}])
    code, _, err = agree(capsys, mos)
    assert code == 2 and "give a judge's run" in err


# --- judge against judge -----------------------------------------------------------------------------

A_SCORES = {"e1": [9, 8, 7, 9], "e2": [6, 5, 6, 5], "e3": [4, 3, 3, 2]}  # items i1 i2 (c1), i3 i4 (c2)
B_SCORES = {"e1": [8, 9, 8, 8], "e2": [3, 4, 2, 3], "e3": [5, 6, 6, 5]}
CATEGORY = {"i1": "c1", "i2": "c1", "i3": "c2", "i4": "c2", "i5": "c2", "i6": "c1"}


def _run(path, table, extra):
    rows = [(f"i{k + 1}", CATEGORY[f"i{k + 1}"], editor, s) for editor, scores in table.items()
            for k, s in enumerate(scores)]
    return _scores(path / "scores.jsonl", rows + [(i, CATEGORY[i], e, s) for i, e, s in extra])


def test_two_judges_leaderboards_and_the_pair_that_flips(tmp_path, capsys):
    """Macro means (mean of the two category means): A e1 8.25, e2 5.5, e3 3.0; B e1 8.25, e2 3.0, e3 5.5.
    e2 and e3 swap; on every item e2 beats e3 under A and loses under B, so every resample agrees."""
    _run(tmp_path / "a", A_SCORES, [("i5", "e3", 4), ("i6", "e1", 7)])  # i6: only in A
    _run(tmp_path / "b", B_SCORES, [("i5", "e3", None)])                 # i5: failed under B
    with open(tmp_path / "b" / "scores.jsonl", "a") as f:                  # a killed run's torn last line
        f.write('{"item_id": "i9", "categ')
    out = tmp_path / "agree.json"
    code, printed, err = agree(capsys, tmp_path / "a", tmp_path / "b", "--json", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["mode"] == "judges"
    assert result["join"]["common"] == 12 and result["join"]["failed_under_either"] == 1
    assert result["join"]["only_in_labels"] == 1
    editors = result["editors"]
    assert [editors[e]["macro_a"]["point"] for e in ("e1", "e2", "e3")] == pytest.approx([8.25, 5.5, 3.0])
    assert [editors[e]["macro_b"]["point"] for e in ("e1", "e2", "e3")] == pytest.approx([8.25, 3.0, 5.5])
    assert [(editors[e]["rank_a"], editors[e]["rank_b"]) for e in ("e1", "e2", "e3")] == [(1, 1), (2, 3), (3, 2)]
    flipped = [p for p in result["pairs"] if p["flipped"]]
    assert [(p["first"], p["second"], p["order_a"], p["order_b"]) for p in flipped] == [("e2", "e3", ">", "<")]
    assert flipped[0]["p_first_above_a"] == 1.0 and flipped[0]["p_first_above_b"] == 0.0
    board = result["leaderboard"]
    assert board["changes"] is True
    assert board["spearman"]["point"] == pytest.approx(0.5)    # ranks 1 2 3 vs 1 3 2
    assert board["kendall"]["point"] == pytest.approx(1 / 3)
    xa = [s for e in A_SCORES for s in A_SCORES[e]]
    xb = [s for e in B_SCORES for s in B_SCORES[e]]
    assert result["overall"]["spearman"]["point"] == pytest.approx(spearman(xa, xb))
    assert result["overall"]["kendall"]["n_items"] == 4
    c1 = [k for k in range(12) if k % 4 < 2]
    assert result["categories"]["c1"]["kendall"]["point"] == pytest.approx(
        kendall_tau_b([xa[k] for k in c1], [xb[k] for k in c1]))
    assert "the leaderboard changes" in printed and "e2 > e3 under A" in printed


def test_two_judges_with_nothing_in_common_stop(tmp_path, capsys):
    _run(tmp_path / "a", {"e1": [1, 2]}, [])
    _scores(tmp_path / "b" / "scores.jsonl", [("z1", "c1", "e1", 3)])
    code, _, err = agree(capsys, tmp_path / "a", tmp_path / "b" / "scores.jsonl")
    assert code == 2 and "no edit that both scored" in err


def test_intervals_contain_their_point_and_are_reproducible_without_the_released_files():
    from editjudge.trust.agreement import pair_agreement

    rng = random.Random(0)
    joined = [((str(k), None, None), rng.choice(["A>B", "B>A", "A=B=Good", "A=B=Bad"]),
               rng.choice(["A>B", "B>A", "A=B=Good", "A=B=Bad", None])) for k in range(300)]
    first = pair_agreement(joined, reps=200)
    assert first == pair_agreement(joined, reps=200)
    assert all(math.isfinite(f["low"]) and f["low"] <= f["point"] <= f["high"] for f in first["figures"].values())
