"""Aggregation of score records, checked against numbers worked out by hand."""

import math

import pytest

from editjudge.aggregate import Stats, category_stats, editor_overall, t_quantile


def rec(editor, category, item_id, score, **extra):
    return {"item_id": item_id, "category": category, "editor": editor, "score": score,
            "raw_output": "Score: ?", "error": None if score is not None else "unparseable", "fallback": False,
            **extra}


# Editor A: color has 5 scored items + 1 failure, style 1 scored item, text 2 failures (nothing scored).
# Editor B: style 2 scored items, color 1. Records interleave editors and categories on purpose.
RECORDS = [
    rec("A", "color", "c1", 6.0, sub_scores={"sc": 6}),
    rec("B", "style", "s1", 4.0),
    rec("A", "color", "c2", 8.0),
    rec("A", "style", "s1", 2.0),
    rec("A", "color", "c3", None),
    rec("A", "text", "t1", None),
    rec("A", "color", "c4", 7.0),
    rec("B", "style", "s2", 6),  # ints are scores too
    rec("A", "color", "c5", 9.0),
    rec("A", "text", "t2", None),
    rec("B", "color", "c1", 10.0),
    rec("A", "color", "c6", 5.0),
]


def test_known_t_quantiles():
    # two-sided 95% critical values from standard t tables
    for df, value in [(1, 12.706205), (2, 4.302653), (4, 2.776445), (10, 2.228139), (30, 2.042272),
                      (120, 1.979930)]:
        assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-6)
    assert t_quantile(0.975, 10**6) == pytest.approx(1.959966, abs=1e-6)  # -> the normal 1.959964
    assert t_quantile(0.025, 4) == -t_quantile(0.975, 4)
    assert t_quantile(0.5, 3) == 0.0
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 9, 17, 50, 300, 10**5, 2.5):
        for p in (0.6, 0.9, 0.975, 0.995, 0.9995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8)


def test_category_stats_by_hand():
    stats = category_stats(RECORDS)
    assert list(stats) == ["A", "B"]  # first appearance
    assert list(stats["A"]) == ["color", "style", "text"] and list(stats["B"]) == ["style", "color"]

    color = stats["A"]["color"]
    # scored 6, 8, 7, 9, 5: mean 35/5 = 7; squared deviations 1+1+0+4+4 = 10; var 10/4 = 2.5
    # std = sqrt(2.5) = 1.5811388; ci95 = t_{0.975,4} * std / sqrt(5) = 2.776445 * sqrt(0.5) = 1.9632432
    assert (color.n, color.n_failed, color.n_scored) == (6, 1, 5)
    assert color.mean == 7.0
    assert color.std == pytest.approx(math.sqrt(2.5), rel=1e-12)
    assert color.ci95 == pytest.approx(1.9632432, abs=1e-6)
    assert (color.min, color.max) == (5.0, 9.0)

    # a single scored item: no spread, no interval
    assert stats["A"]["style"] == Stats(n=1, n_failed=0, n_scored=1, mean=2.0, std=None, ci95=None, min=2.0, max=2.0)
    # every item failed: counted, nothing else
    assert stats["A"]["text"] == Stats(n=2, n_failed=2, n_scored=0, mean=None, std=None, ci95=None, min=None, max=None)

    b_style = stats["B"]["style"]
    # 4, 6: mean 5, std sqrt((1+1)/1) = sqrt(2); ci95 = t_{0.975,1} * sqrt(2) / sqrt(2) = 12.706205
    assert b_style.mean == 5.0 and b_style.std == pytest.approx(math.sqrt(2))
    assert b_style.ci95 == pytest.approx(12.706205, abs=1e-6)
    assert color.to_dict() == {"n": 6, "n_failed": 1, "n_scored": 5, "mean": 7.0, "std": color.std,
                               "ci95": color.ci95, "min": 5.0, "max": 9.0}


def test_editor_overall_macro_differs_from_micro():
    overall = editor_overall(RECORDS)
    assert list(overall) == ["A", "B"]
    a = overall["A"]
    # macro over scored categories: (color 7 + style 2) / 2 = 4.5 (text, all failed, is left out)
    # micro over scored items: (6+8+7+9+5 + 2) / 6 = 37/6 = 6.1666...
    assert a["macro"] == 4.5
    assert a["micro"] == pytest.approx(37 / 6)
    # 9 items, 3 failed (c3, t1, t2)
    assert (a["n"], a["n_failed"], a["n_scored"]) == (9, 3, 6)
    assert a["failure_rate"] == pytest.approx(1 / 3)
    assert (a["n_categories"], a["n_categories_scored"], a["unscored_categories"]) == (3, 2, ["text"])
    b = overall["B"]
    # macro (style 5 + color 10) / 2 = 7.5; micro (4 + 6 + 10) / 3 = 20/3
    assert b["macro"] == 7.5 and b["micro"] == pytest.approx(20 / 3)
    assert (b["n"], b["n_failed"], b["failure_rate"], b["unscored_categories"]) == (3, 0, 0.0, [])


def test_an_editor_with_nothing_scored():
    overall = editor_overall([rec("X", "a", "1", None), rec("X", "b", "2", None)])
    assert overall["X"]["macro"] is None and overall["X"]["micro"] is None
    assert overall["X"]["failure_rate"] == 1.0 and overall["X"]["unscored_categories"] == ["a", "b"]
    assert category_stats([]) == {} and editor_overall([]) == {}


@pytest.mark.parametrize("bad, message", [
    (rec("A", "c", "1", float("nan")), "score must be a finite number or None"),
    (rec("A", "c", "1", True), "score must be a finite number or None"),
    (rec("A", "c", "1", "7"), "score must be a finite number or None"),
    ({"item_id": "1", "editor": "A", "score": 1.0}, r"missing or non-string field\(s\) \['category'\]"),
    ({"item_id": "1", "editor": "A", "category": "c"}, r"missing or non-string field\(s\) \['score'\]"),
])
def test_malformed_records_are_errors(bad, message):
    with pytest.raises(ValueError, match=r"score record 1 .*" + message):
        category_stats([rec("A", "c", "0", 1.0), bad])


def test_the_same_editor_and_item_twice_is_an_error():
    with pytest.raises(ValueError, match=r"score record 1 \(item 'x', editor 'A'\): the same editor and item appear twice"):
        editor_overall([rec("A", "c", "x", 1.0), rec("A", "c", "x", 2.0)])
    assert editor_overall([rec("A", "c", "x", 1.0), rec("B", "c", "x", 2.0)])["B"]["micro"] == 2.0


def test_spearman_by_hand():
    from editjudge.aggregate import spearman

    # ranks [1,2,3,4] vs [1,3,2,4]: d^2 = 0+1+1+0 = 2, rho = 1 - 6*2/(4*15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, float("nan"), 3], [1, 2, 3]) == pytest.approx(1.0)  # the nan pair is left out
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # no variance: undefined, not 0
