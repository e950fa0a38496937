"""What a report counts: exactly this run's (editor, item) pairs, and means that failures cannot flatter."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from editjudge.aggregate import FAILURE_RATE_FLAG, common_items, editor_overall
from editjudge.benchmark import BenchmarkItem
from editjudge.config import load_config
from editjudge.pipeline import run
from editjudge.report import format_table, write_reports

# ---------------------------------------------------------------------------------------- scope (pipeline)

ITEMS = [(f"it{i}", f"c{i % 2}") for i in range(6)]


def _config(root: Path, judge_path: str, editors=("A", "B"), **benchmark) -> dict:
    return {
        "benchmark": {"path": str(root / "bench" / "annotations.jsonl"), **benchmark},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": name, "type": "precomputed", "image_dir": str(root / name)} for name in editors]},
        "reward_model": {"type": "qwen3_vl", "params": {"model_path": judge_path, "device": "cpu", "batch_size": 6,
                                                         "max_new_tokens": 12, "show_progress": False}},
        "output_dir": str(root / "out"),
    }


def _run(root: Path, data: dict, stage: str = "all") -> dict:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return run(load_config(path), stage)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, judge_path) -> Path:
    """Two precomputed editors over six items in two categories, edited and scored."""
    root = tmp_path_factory.mktemp("scope")
    (root / "bench").mkdir()
    with open(root / "bench" / "annotations.jsonl", "w") as f:
        for i, (item_id, category) in enumerate(ITEMS):
            Image.new("RGB", (32, 32), (30 * i, 90, 120)).save(root / "bench" / f"{item_id}.png")
            f.write(json.dumps({"id": item_id, "category": category, "instruction": f"edit {i}",
                                "image": f"{item_id}.png"}) + "\n")
    for n, editor in enumerate(("A", "B")):
        (root / editor).mkdir()
        for i, (item_id, _) in enumerate(ITEMS):
            Image.new("RGB", (32, 32), (20 + 40 * i + 25 * n,) * 3).save(root / editor / f"{item_id}.png")
    _run(root, _config(root, judge_path))
    assert len((root / "out" / "scores.jsonl").read_text().splitlines()) == 12
    return root


def _copy(full_run: Path, root: Path) -> None:
    for name in ("bench", "A", "B", "out"):
        shutil.copytree(full_run / name, root / name)


def _summary(root: Path) -> dict:
    return json.loads((root / "out" / "summary.json").read_text())


@pytest.mark.parametrize("case", ["limit", "removed_editor", "categories"])
def test_the_report_covers_exactly_this_runs_pairs(case, full_run, tmp_path, judge_path):
    _copy(full_run, tmp_path)
    if case == "limit":
        data, pairs = _config(tmp_path, judge_path, limit=3), {(e, i) for e in "AB" for i, _ in ITEMS[:3]}
    elif case == "removed_editor":
        data, pairs = _config(tmp_path, judge_path, editors=("B",)), {("B", i) for i, _ in ITEMS}
    else:
        data, pairs = _config(tmp_path, judge_path, categories=["c1"]), {(e, i) for e in "AB" for i, c in ITEMS
                                                                            if c == "c1"}
    result = _run(tmp_path, data)
    assert {(r["editor"], r["item_id"]) for r in result["records"]} == pairs
    summary = _summary(tmp_path)
    editors = sorted({e for e, _ in pairs})
    assert sorted(summary["editors"]) == editors
    for editor in editors:
        mine = [r for r in result["records"] if r["editor"] == editor]
        overall = summary["editors"][editor]["overall"]
        assert overall["n"] == len(mine) == len([p for p in pairs if p[0] == editor])
        assert overall["micro"] == pytest.approx(sum(r["score"] for r in mine) / len(mine))
    categories = sorted({c for i, c in ITEMS if any(p[1] == i for p in pairs)})
    assert sorted(summary["categories"]) == categories
    # The other lines are kept in the file, not counted, and the report says so.
    assert len((tmp_path / "out" / "scores.jsonl").read_text().splitlines()) == 12
    assert summary["scope"] == {"editors": editors, "items": len({i for _, i in pairs}), "pairs": len(pairs),
                                "pairs_without_record": 0, "lines_not_counted": 12 - len(pairs)}
    assert f"{12 - len(pairs)} other line(s) in scores.jsonl" in (tmp_path / "out" / "report.md").read_text()
    assert 'id="scope"' in (tmp_path / "out" / "report.html").read_text()


def test_report_stage_alone_names_the_pairs_not_scored_yet(full_run, tmp_path, judge_path, caplog):
    """A benchmark grown after the run: the new item's pairs are not made up, they are counted as missing."""
    _copy(full_run, tmp_path)
    bench = tmp_path / "bench" / "annotations.jsonl"
    Image.new("RGB", (32, 32), "red").save(tmp_path / "bench" / "new.png")
    bench.write_text(bench.read_text() + json.dumps({"id": "new", "category": "c0", "instruction": "x",
                                                      "image": "new.png"}) + "\n")
    result = _run(tmp_path, _config(tmp_path, judge_path), stage="report")
    assert len(result["records"]) == 12
    assert _summary(tmp_path)["scope"]["pairs_without_record"] == 2
    assert "2 of the 14 (editor, item) pairs have no score yet" in caplog.text


# ---------------------------------------------------------------------------------------- three kinds of mean


def rec(editor: str, category: str, item_id: str, score: float | None) -> dict:
    return {"item_id": item_id, "category": category, "editor": editor, "score": score,
            "failed_stage": "edit" if score is None else None, "error": "boom" if score is None else None}


# "fails" fails on the hard items (h1, h2) and on all of category "rare"; "steady" scores everything.
RECORDS = [
    rec("fails", "easy", "e1", 9.0), rec("fails", "easy", "e2", 8.0),
    rec("fails", "hard", "h1", None), rec("fails", "hard", "h2", None), rec("fails", "hard", "h3", 6.0),
    rec("fails", "rare", "r1", None),
    rec("steady", "easy", "e1", 7.0), rec("steady", "easy", "e2", 8.0),
    rec("steady", "hard", "h1", 2.0), rec("steady", "hard", "h2", 3.0), rec("steady", "hard", "h3", 4.0),
    rec("steady", "rare", "r1", 5.0),
]


def test_failures_do_not_flatter_an_editor():
    overall = editor_overall(RECORDS, floor=0.0)
    fails, steady = overall["fails"], overall["steady"]
    # GEdit-Bench's headline drops the failures and the unscored category: the failing editor ranks first.
    assert fails["macro"] == pytest.approx(((9 + 8) / 2 + 6) / 2)  # 7.25
    assert steady["macro"] == pytest.approx(((7 + 8) / 2 + (2 + 3 + 4) / 3 + 5) / 3)  # 5.1667
    assert fails["macro"] > steady["macro"] and fails["unscored_categories"] == ["rare"]
    # Failures at the scale's minimum: every item and category counts, and the ranking turns.
    assert fails["macro_failed_as_min"] == pytest.approx(((9 + 8) / 2 + (0 + 0 + 6) / 3 + 0) / 3)  # 3.5
    assert steady["macro_failed_as_min"] == pytest.approx(steady["macro"])
    assert fails["macro_failed_as_min"] < steady["macro_failed_as_min"]
    # The items both scored (e1, e2, h3): the like-for-like comparison.
    assert common_items(RECORDS) == {"e1", "e2", "h3"}
    assert fails["macro_common"] == pytest.approx(((9 + 8) / 2 + 6) / 2)
    assert steady["macro_common"] == pytest.approx(((7 + 8) / 2 + 4) / 2)
    assert fails["n_common"] == steady["n_common"] == 3
    assert fails["high_failure_rate"] and not steady["high_failure_rate"]
    # The floor is the scale's: a 1-10 scale counts a failure as 1.
    assert editor_overall(RECORDS, floor=1.0)["fails"]["macro_failed_as_min"] == pytest.approx(
        ((9 + 8) / 2 + (1 + 1 + 6) / 3 + 1) / 3)


def test_the_flag_is_for_a_failure_rate_over_five_percent():
    assert FAILURE_RATE_FLAG == 0.05
    at = [rec("x", "c", f"i{n}", None if n == 0 else 5.0) for n in range(20)]  # 1/20 = 5%: not over
    over = [rec("y", "c", f"i{n}", None if n < 2 else 5.0) for n in range(20)]  # 10%
    overall = editor_overall(at + over)
    assert not overall["x"]["high_failure_rate"] and overall["y"]["high_failure_rate"]
    assert math.isclose(overall["x"]["macro_failed_as_min"], 19 * 5.0 / 20)


def test_every_report_shows_the_three_means_named_and_the_flag(tmp_path):
    items = [BenchmarkItem(r["item_id"], r["category"], "do it", tmp_path / f"{r['item_id']}.png")
             for r in RECORDS if r["editor"] == "steady"]
    paths = write_reports(tmp_path, RECORDS, items, thumbnail_size=32, floor=1.0)
    overall = editor_overall(RECORDS, floor=1.0)
    summary = json.loads(paths["summary.json"].read_text())
    for editor in ("fails", "steady"):
        assert summary["editors"][editor]["overall"] == overall[editor]
    assert summary["score_floor"] == 1.0 and summary["n_common_items"] == 3
    assert set(summary["means"]) == {"macro", "macro_failed_as_min", "macro_common", "micro"}
    assert "headline" in summary["means"]["macro"] and "GEdit-Bench" in summary["means"]["macro"]
    assert "minimum (1)" in summary["means"]["macro_failed_as_min"]
    assert "3 items that every editor scored" in summary["means"]["macro_common"]

    with open(paths["summary.csv"], newline="") as f:
        table = list(csv.reader(f))
    assert {len(row) for row in table} == {len(table[0])}  # every row has every column
    rows = {(r["editor"], r["category"]): r for r in csv.DictReader(io.StringIO(paths["summary.csv"].read_text()))}
    assert float(rows["fails", "macro, failed = min"]["mean"]) == pytest.approx(overall["fails"]["macro_failed_as_min"])
    assert float(rows["fails", "macro, common items"]["mean"]) == pytest.approx(overall["fails"]["macro_common"])
    assert rows["fails", "macro, common items"]["n"] == "3"
    assert rows["fails", "overall (macro)"]["flag"] == "flagged: over 5% failed"
    assert rows["steady", "overall (macro)"]["flag"] == ""

    md = paths["report.md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| editor |"))
    assert "overall (macro) | macro, failed = min | macro, common items | overall (micro) | failure rate" in header
    fails_row = next(line for line in md.splitlines() if line.startswith("| fails |"))
    assert f"| {overall['fails']['macro_failed_as_min']:.2f} |" in fails_row
    assert "50.0% (3/6) flagged: over 5% failed" in fails_row
    assert "flagged" not in next(line for line in md.splitlines() if line.startswith("| steady |"))
    assert "- macro, failed = min: the same mean with every failed item counted" in md

    html = paths["report.html"].read_text()
    assert f'<td data-mean="macro_common">{overall["steady"]["macro_common"]:.2f}</td>' in html
    assert html.count("high-failure-rate") == 1 and '<ul id="means">' in html

    table = format_table(RECORDS, floor=1.0)
    assert "fail=min" in table and "3/6 !" in table and "common" in table
