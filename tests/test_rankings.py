"""Rankings with their uncertainty (stratified paired bootstrap), Bradley-Terry strengths from pairwise
verdicts, and the per-language split, in summary.json and every report (issue 24 items 3 and 6)."""

from __future__ import annotations

import csv
import json
import math
import random
import re
from pathlib import Path

import pytest

from editjudge.aggregate import editor_overall
from editjudge.benchmark import BenchmarkItem, load_benchmark
from editjudge.by_language import by_language
from editjudge.report import format_table, write_reports
from editjudge.trust.bootstrap import resamples
from editjudge.trust.bradley_terry import fit_bradley_terry, pairwise_ranking, read_pairwise
from editjudge.trust.rankings import macro_ranking, mid_ranks, stratified_resamples
from tests.conftest import SAMPLE


def _records(scores: dict[str, list[float | None]], categories: list[str], languages: list[str] | None = None) -> list[dict]:
    """One record per (editor, item i): item ``i{i}`` in ``categories[i]``."""
    return [{"item_id": f"i{i}", "category": categories[i], "editor": editor, "score": score}
            for editor, values in scores.items() for i, score in enumerate(values)]


def _noisy(n: int, mean: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [min(10.0, max(0.0, round(rng.gauss(mean, 2.0)))) for _ in range(n)]


CATS = ["a"] * 20 + ["b"] * 12 + ["c"] * 8


# ---------------------------------------------------------------------------------------- the bootstrap ranking


def test_intervals_contain_the_point_estimates_which_are_the_common_macro_means():
    scores = {"x": _noisy(40, 6.0, 1), "y": _noisy(40, 5.5, 2), "z": _noisy(40, 4.0, 3)}
    scores["y"][3] = None  # a failure: item i3 leaves the common set for everyone
    records = _records(scores, CATS)
    ranking = macro_ranking(records)
    overall = editor_overall(records)
    assert ranking["n_items"] == 39 and ranking["categories"] == {"a": 19, "b": 12, "c": 8}
    for editor, entry in ranking["editors"].items():
        assert entry["macro"] == pytest.approx(overall[editor]["macro_common"], abs=1e-12)
        low, high = entry["macro_interval"]
        assert low < entry["macro"] < high and high - low < 3.0
        assert entry["rank_interval"][0] <= entry["rank"] <= entry["rank_interval"][1]
    assert math.fsum(e["p_first"] for e in ranking["editors"].values()) == pytest.approx(1.0)
    assert macro_ranking(list(reversed(records))) == ranking  # record order does not move a figure


def test_far_apart_editors_rank_the_same_way_in_every_resample():
    records = _records({"worse": _noisy(40, 2.0, 4), "better": _noisy(40, 8.5, 5)}, CATS)
    editors = macro_ranking(records)["editors"]
    assert editors["better"]["p_first"] == 1.0 and editors["worse"]["p_first"] == 0.0
    assert editors["better"]["rank"] == 1 and editors["better"]["rank_interval"] == [1.0, 1.0]
    assert editors["worse"]["rank_interval"] == [2.0, 2.0]


def test_identical_editors_share_first_place():
    same = _noisy(40, 6.0, 6)
    editors = macro_ranking(_records({"p": same, "q": list(same), "low": _noisy(40, 1.0, 7)}, CATS))["editors"]
    assert editors["p"]["p_first"] == pytest.approx(0.5) and editors["q"]["p_first"] == pytest.approx(0.5)
    assert editors["p"]["rank"] == 1.5 and editors["p"]["rank_interval"] == [1.5, 1.5]
    assert editors["low"]["p_first"] == 0.0 and editors["low"]["rank"] == 3
    assert mid_ranks([3.0, 5.0, 5.0, 1.0]) == [3.0, 1.5, 1.5, 4.0]
    rng = random.Random(12)  # scores that are not whole numbers sum alike for both too: an exact tie every time
    odd = [rng.uniform(0, 10) / 3 for _ in range(40)]
    editors = macro_ranking(_records({"p": odd, "q": list(odd)}, CATS))["editors"]
    assert editors["p"]["p_first"] == editors["q"]["p_first"] == 0.5


def test_the_same_items_are_drawn_for_every_editor():
    """Paired: an editor exactly 0.1 above another on every item is first in every resample, though the items'
    spread (0-10) dwarfs the gap; drawing items for each editor apart would put it first about half the time."""
    base = _noisy(40, 5.0, 8)
    editors = macro_ranking(_records({"base": base, "plus": [s + 0.1 for s in base]}, CATS))["editors"]
    assert editors["plus"]["p_first"] == 1.0
    low, high = editors["base"]["macro_interval"]
    assert high - low > 0.5  # the spread is real; only the pairing keeps the order


def test_stratified_resampling_keeps_every_category_size():
    draws = list(stratified_resamples([3, 5, 1], reps=200, seed=0))
    assert len(draws) == 200
    assert all([len(rows) for rows in draw] == [3, 5, 1] for draw in draws)
    assert all(0 <= i < n for draw in draws for rows, n in zip(draw, [3, 5, 1]) for i in rows)
    assert len({tuple(draw[1]) for draw in draws}) > 100  # they are resamples, not one draw repeated
    assert [draw[0] for draw in draws] == list(resamples(3, 200, 0))  # stratum 0 is the plain bootstrap, seed 0
    # Constant within each category, different between them: every resample keeps both categories at their
    # sizes, so the macro mean never moves (resampling all items at once would drop a category now and then).
    records = _records({"x": [10.0] * 2 + [0.0] * 8, "y": [4.0] * 10}, ["rare"] * 2 + ["common"] * 8)
    editors = macro_ranking(records)["editors"]
    assert editors["x"]["macro_interval"] == [5.0, 5.0] and editors["x"]["p_first"] == 1.0
    thirds = macro_ranking(_records({"x": [0.1] * 3 + [0.7] * 7}, ["a"] * 3 + ["b"] * 7))["editors"]["x"]
    assert thirds["macro_interval"] == [thirds["macro"]] * 2  # no rounding puts the point outside its interval


def test_no_common_item_no_ranking():
    records = _records({"x": [5.0, None], "y": [None, 6.0]}, ["a", "a"])
    ranking = macro_ranking(records)
    assert ranking["editors"] == {} and ranking["n_items"] == 0


# ---------------------------------------------------------------------------------------- Bradley-Terry


def test_two_editors_strength_ratio_is_the_wins_ratio():
    strengths = fit_bradley_terry([[0, 6], [3, 0]])
    assert strengths[0] / strengths[1] == pytest.approx(2.0, rel=1e-7)
    assert strengths[0] * strengths[1] == pytest.approx(1.0)  # log-strengths sum to 0
    # ties count half a win each way: 4 wins, 2 losses, 2 ties -> 5 : 3
    pairs = ([{"a": "A", "b": "B", "verdict": "A>B"}] * 4 + [{"a": "B", "b": "A", "verdict": "A>B"}] * 2
             + [{"a": "A", "b": "B", "verdict": "A=B=Good"}, {"a": "B", "b": "A", "verdict": "A=B=Bad"},
                {"a": "A", "b": "B", "verdict": None}])
    pairs = [dict(p, item_id=f"i{n}", category="c") for n, p in enumerate(pairs)]
    result = pairwise_ranking(pairs)
    a, b = result["editors"]["A"], result["editors"]["B"]
    assert a["strength"] / b["strength"] == pytest.approx(5 / 3, rel=1e-7)
    assert (a["wins"], b["wins"], a["verdicts"]) == (5.0, 3.0, 8)
    assert result["n_null"] == 1 and result["n_verdicts"] == 8 and result["n_items"] == 8


def _three_editor_pairs() -> list[dict]:
    """Strengths 4 : 2 : 1 exactly: 30 verdicts per pair, wins in proportion s_i / (s_i + s_j), one item each."""
    wins = {("s4", "s2"): 20, ("s2", "s4"): 10, ("s4", "s1"): 24, ("s1", "s4"): 6, ("s2", "s1"): 20, ("s1", "s2"): 10}
    pairs = []
    for (winner, loser), count in wins.items():
        for _ in range(count):
            n = len(pairs)
            pairs.append({"item_id": f"i{n}", "category": ["x", "y", "z"][n % 3], "a": loser, "b": winner,
                          "verdict": "B>A"})
    return pairs


def test_three_editors_with_known_strengths():
    """W_i = sum_j n_ij s_i / (s_i + s_j) holds exactly for 4 : 2 : 1, so that is the maximum; normalised to
    geometric mean 1 it is 2, 1, 0.5."""
    assert fit_bradley_terry([[0, 20, 24], [10, 0, 20], [6, 10, 0]]) == pytest.approx([2.0, 1.0, 0.5], rel=1e-7)
    result = pairwise_ranking(_three_editor_pairs())
    editors = result["editors"]
    assert [editors[e]["strength"] for e in ("s4", "s2", "s1")] == pytest.approx([2.0, 1.0, 0.5], rel=1e-7)
    assert [editors[e]["rank"] for e in ("s4", "s2", "s1")] == [1, 2, 3]
    for entry in editors.values():
        low, high = entry["strength_interval"]
        assert low < entry["strength"] < high
    assert result["n_resamples_used"] == 1000 and result["n_items"] == 90
    assert editors["s4"]["p_first"] > 0.9 and math.fsum(e["p_first"] for e in editors.values()) == pytest.approx(1.0)


def test_no_finite_strengths_when_one_editor_never_loses():
    assert fit_bradley_terry([[0, 5], [0, 0]]) is None
    result = pairwise_ranking([{"item_id": "i", "category": "c", "a": "A", "b": "B", "verdict": "A>B"}])
    assert result["editors"]["A"]["strength"] is None and "no finite strengths" in result["reason"]


def test_read_pairwise_names_a_bad_line(tmp_path):
    path = tmp_path / "pairwise.jsonl"
    path.write_text(json.dumps({"item_id": "i", "category": "c", "a": "A", "b": "B", "verdict": "A>>B"}) + "\n")
    with pytest.raises(ValueError, match="record 1: unknown verdict 'A>>B'"):
        read_pairwise(path)


# ---------------------------------------------------------------------------------------- languages, reports


def test_per_language_split_by_hand():
    records = _records({"x": [8.0, 6.0, 2.0, None], "y": [4.0, 4.0, 6.0, 8.0]}, ["a", "b", "a", "b"])
    split = by_language(records, {"i0": "en", "i1": "en", "i2": "cn", "i3": "cn"})
    assert list(split) == ["en", "cn"] and split["en"]["n_items"] == 2
    assert split["en"]["editors"]["x"]["overall"]["macro"] == pytest.approx(7.0)  # (8 + 6) / 2
    assert split["cn"]["editors"]["x"]["overall"]["macro"] == pytest.approx(2.0)  # b failed: only a counts
    assert split["cn"]["editors"]["x"]["overall"]["n_failed"] == 1
    assert split["cn"]["editors"]["y"]["categories"]["b"]["mean"] == 8.0
    assert by_language(records, {}) == {}


def test_per_language_split_on_the_sample_benchmark():
    items = load_benchmark(SAMPLE)  # the loader sets each item's language: 26 en, 2 zh
    records = [{"item_id": item.id, "category": item.category, "editor": "e", "score": float(n % 11)}
               for n, item in enumerate(items)]
    split = by_language(records, {item.id: item.language for item in items})
    assert {lang: data["n_items"] for lang, data in split.items()} == {"en": 26, "zh": 2}
    zh = [r["score"] for r, item in zip(records, items) if item.language == "zh"]
    assert split["zh"]["editors"]["e"]["overall"]["micro"] == pytest.approx(sum(zh) / 2)


def _pair_lines(records: list[dict]) -> str:
    by_item: dict[str, dict[str, float]] = {}
    for r in records:
        by_item.setdefault(r["item_id"], {})[r["editor"]] = r["score"]
    lines = []
    for item, scores in by_item.items():
        category = next(r["category"] for r in records if r["item_id"] == item)
        for a, b in (("x", "y"), ("y", "z"), ("x", "z")):
            verdict = "A>B" if scores[a] > scores[b] else ("B>A" if scores[a] < scores[b] else "A=B=Good")
            lines.append({"item_id": item, "category": category, "a": a, "b": b, "verdict": verdict})
    lines.append({"item_id": "i0", "category": "a", "a": "x", "b": "gone", "verdict": "A>B"})  # not this report's
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_summary_and_every_report_carry_the_ranking_the_languages_and_bradley_terry(tmp_path):
    scores = {"x": _noisy(40, 7.0, 9), "y": _noisy(40, 5.0, 10), "z": _noisy(40, 2.0, 11)}
    records = _records(scores, CATS)
    items = [BenchmarkItem(f"i{i}", CATS[i], "edit it", Path("none.png"), language="en" if i % 2 else "cn")
             for i in range(40)]
    out = tmp_path / "out"
    out.mkdir()
    (out / "pairwise.jsonl").write_text(_pair_lines(records))
    paths = write_reports(out, records, items, thumbnail_cache=False)
    summary = json.loads(paths["summary.json"].read_text())
    ranking = summary["ranking"]["editors"]
    assert ranking["x"]["p_first"] == 1.0 and ranking["x"]["macro"] == summary["editors"]["x"]["overall"]["macro_common"]
    assert set(summary["languages"]) == {"en", "cn"} and summary["languages"]["en"]["n_items"] == 20
    en_x = [s for i, s in enumerate(scores["x"]) if i % 2]
    assert summary["languages"]["en"]["editors"]["x"]["overall"]["micro"] == pytest.approx(sum(en_x) / 20)
    pairwise = summary["pairwise_ranking"]
    assert pairwise["n_out_of_scope"] == 1 and set(pairwise["editors"]) == {"x", "y", "z"}
    assert pairwise["editors"]["x"]["rank"] == 1 and pairwise["editors"]["x"]["strength"] > 1

    with open(paths["ranking.csv"], newline="") as f:  # the ranking for spreadsheets and plots: summary.json's
        rows = list(csv.DictReader(f))
    assert [r["editor"] for r in rows] == ["x", "y", "z"]
    for row in rows:
        entry = ranking[row["editor"]]
        assert float(row["macro"]) == entry["macro"] and float(row["p_first"]) == entry["p_first"]
        assert [float(row["macro_low"]), float(row["macro_high"])] == entry["macro_interval"]
        assert [float(row["rank_low"]), float(row["rank_high"])] == entry["rank_interval"]

    md = paths["report.md"].read_text()
    assert "## Ranking" in md and "## Pairwise ranking (Bradley-Terry)" in md and "## By language" in md
    row = next(line for line in md.splitlines() if line.startswith("| 1 | x |"))
    low, high = ranking["x"]["macro_interval"]
    assert f"| {low:.2f}\u2013{high:.2f} |" in row and "| 1.00 |" in row
    assert "| editor | cn (20 items) | en (20 items) | all |" in md
    html = paths["report.html"].read_text()
    assert 'id="ranking-table"' in html and 'id="pairwise-table"' in html and 'id="language-table"' in html
    table = format_table(records, languages={item.id: item.language for item in items})
    assert "P(first)" in table and "macro mean per language:" in table
    assert "P(first)" in format_table(records) and "per language" not in format_table(records)


def test_a_bad_pairwise_file_is_named_and_the_report_still_written(tmp_path):
    records = _records({"x": [5.0, 6.0], "y": [4.0, 4.0]}, ["a", "a"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "pairwise.jsonl").write_text(json.dumps({"item_id": "i0", "a": "x", "b": "y", "verdict": "A>B"}) + "\n")
    paths = write_reports(out, records, [], thumbnail_cache=False)
    summary = json.loads(paths["summary.json"].read_text())
    assert "missing or non-string field(s) ['category']" in summary["pairwise_ranking"]["error"]
    assert "pairwise.jsonl not used" in paths["report.md"].read_text()
    assert "languages" not in summary  # no item has a language


def test_names_in_the_ranking_and_language_tables_are_escaped(tmp_path):
    hostile = "<img src=x onerror=alert(1)>"
    records = _records({hostile: [5.0, 6.0, 7.0, 8.0], "plain": [1.0, 2.0, 3.0, 4.0]}, ["a", "a", "b", "b"])
    items = [BenchmarkItem(f"i{i}", "a", "x", Path("none.png"), language=["en", "<b>cn</b>"][i % 2]) for i in range(4)]
    (tmp_path / "out").mkdir()
    paths = write_reports(tmp_path / "out", records, items, thumbnail_cache=False)
    html, md = paths["report.html"].read_text(), paths["report.md"].read_text()
    assert "<img src=x" not in html and "<b>cn</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;b&gt;cn&lt;/b&gt;" in html
    assert not re.search(r"(?<!\\)<(img|b)", md) and "\\<b\\>cn\\</b\\>" in md  # each < backslash-escaped
