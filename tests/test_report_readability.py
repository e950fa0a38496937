"""The report reads right (issue 21): CI whiskers within the judge's scale and on the overall bars, the kinds
of mean explained once, and "no failures" rather than an empty table."""

from __future__ import annotations

import math
import re
from html import escape
from pathlib import Path

import pytest
from PIL import Image

from editjudge.aggregate import category_stats, editor_overall
from editjudge.benchmark import BenchmarkItem
from editjudge.report import _md, write_reports
from editjudge.report_common import mean_descriptions


def _records(scores: dict[str, dict[str, list[float | None]]]) -> list[dict]:
    return [{"item_id": f"{category}-{i}", "category": category, "editor": editor, "score": score,
             "error": None if score is not None else "boom", "failed_stage": None if score is not None else "judge"}
            for editor, by_category in scores.items() for category, values in by_category.items()
            for i, score in enumerate(values)]


def _items(tmp_path: Path, records: list[dict]) -> list[BenchmarkItem]:
    for name in ("out", "again"):
        (tmp_path / name).mkdir(exist_ok=True)
    source = tmp_path / "source.png"
    Image.new("RGB", (32, 32), (90, 120, 150)).save(source)
    return [BenchmarkItem(item_id, item_id.rsplit("-", 1)[0], "do it", source)
            for item_id in dict.fromkeys(r["item_id"] for r in records)]


# Two items near the top of a 0-10 scale: a 95% t interval (df=1) of about +-6.35 on a mean of 9.5.
NEAR_THE_TOP = {"high": {"a": [9.0, 10.0], "b": [10.0, 9.0, 9.5]}, "low": {"a": [0.0, 1.0], "b": [0.5, 0.0, 1.0]}}


def test_macro_ci95_combines_the_category_intervals():
    records = _records({"x": {"a": [4.0, 6.0, 5.0, 7.0], "b": [1.0, 2.0, 3.0]}, "one": {"a": [1.0, 3.0, 2.0]}})
    overall, stats = editor_overall(records), category_stats(records)
    a, b = stats["x"]["a"], stats["x"]["b"]
    va, vb = a.std ** 2 / a.n_scored, b.std ** 2 / b.n_scored
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)  # Welch-Satterthwaite
    from editjudge.aggregate import t_quantile

    assert overall["x"]["macro_ci95"] == pytest.approx(t_quantile(0.975, df) * math.sqrt(va + vb) / 2, rel=1e-12)
    assert overall["one"]["macro_ci95"] == pytest.approx(stats["one"]["a"].ci95)  # one category: its own interval
    single = editor_overall(_records({"y": {"a": [4.0, 5.0], "b": [3.0]}}))["y"]
    assert single["macro_ci95"] is None  # a category with one scored item: no spread known


def test_chart_whiskers_stay_within_the_scale_and_the_overall_bars_have_them(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    calls = []
    real_bar = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        calls.append((kwargs["label"], list(height), [list(side) for side in kwargs["yerr"]]))
        return real_bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    records = _records(NEAR_THE_TOP)
    write_reports(tmp_path / "out", records, _items(tmp_path, records), score_range=(0, 10))
    overall = editor_overall(records)
    assert [label for label, _, _ in calls] == ["high", "low"]
    for label, heights, (below, above) in calls:
        assert len(heights) == 3  # categories a and b, then the overall (macro) bar
        assert heights[2] == pytest.approx(overall[label]["macro"])
        assert all(not math.isnan(e) for e in below + above)  # every bar has a whisker, the overall one too
        assert all(m + up <= 10.0 + 1e-9 and m - down >= -1e-9 for m, down, up in zip(heights, below, above))
    (_, high, (below, above)), (_, low, (low_below, low_above)) = calls
    assert above[0] == pytest.approx(0.5) and below[0] == pytest.approx(category_stats(records)["high"]["a"].ci95)
    assert low_below[0] == pytest.approx(0.5) and low_above[0] > 6  # clipped at 0 below, whole above
    assert below[2] == pytest.approx(overall["high"]["macro_ci95"])  # the overall whisker is macro_ci95
    csv_text = (tmp_path / "out" / "summary.csv").read_text()
    assert f"high,overall (macro),5,0,5,{overall['high']['macro']},,{overall['high']['macro_ci95']}," in csv_text


def test_the_kinds_of_mean_are_explained_once_in_each_report(tmp_path):
    records = _records(NEAR_THE_TOP)
    paths = write_reports(tmp_path / "out", records, _items(tmp_path, records), score_range=(0, 10))
    html = paths["report.html"].read_text()
    markdown = paths["report.md"].read_text()
    visible = re.sub(r'title="[^"]*"', "", html)  # the header cells' hover text repeats each one on purpose
    for text in mean_descriptions(0.0, 5).values():
        assert visible.count(escape(text)) == 1, text
        assert markdown.count(_md(text)) == 1, text
    for report in (visible, markdown):
        assert "the mean of the category means" in report
        assert "counts them as the scale" not in report  # the old second explanation, in the weighting note
        assert report.count("every editor scored") == 1


def test_no_failures_says_so_instead_of_an_empty_table(tmp_path):
    records = _records(NEAR_THE_TOP)
    html = write_reports(tmp_path / "out", records, _items(tmp_path, records))["report.html"].read_text()
    failures = html[html.index('<h2 id="failures">'):html.index("<h2>Gallery</h2>")]
    assert "no failures" in failures and "<table>" not in failures
    with_one = _records({"e": {"a": [1.0, None]}})
    html = write_reports(tmp_path / "again", with_one, _items(tmp_path, with_one))["report.html"].read_text()
    failures = html[html.index('<h2 id="failures">'):html.index("<h2>Gallery</h2>")]
    assert "no failures" not in failures and "<table>" in failures and "boom" in failures
