"""Reports from score records: summary files, chart, self-contained HTML (also in a headless browser), GEdit export."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from editjudge.aggregate import category_stats, editor_overall
from editjudge.benchmark import BenchmarkItem
from editjudge.paths import safe_name
from editjudge.export_gedit import GEDIT_COLUMNS, GEDIT_GROUPS, export_gedit
from editjudge.report import format_table, write_reports

HOSTILE_INSTRUCTION = "<script>alert(1)</script><script>document.title='pwned'</script> make it red"
HOSTILE_ANSWER = '"><img src=x onerror=alert(2)>'
HOSTILE_ANSWER_DOM = "\"><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
HOSTILE_ERROR = 'RuntimeError: <b>boom</b> & "quotes"'
ODD_ID = 'ca2 "<i>x</i>"'
TITLE = "test report"


def _png(path: Path, colour: tuple[int, int, int], size=(200, 150)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 10):  # some structure, so thumbnails are not flat
        image.paste((255 - colour[0], colour[1], 255 - colour[2]), (x, 0, x + 3, size[1]))
    image.save(path)


def _rec(editor, category, item_id, score, *, sc=None, pq=None, raw="Score: fine", error=None, stage=None,
         image=True):
    record = {"item_id": item_id, "category": category, "editor": editor, "score": score, "raw_output": raw,
              "error": error, "fallback": False, "failed_stage": stage,
              "image": f"edits/{editor}/{safe_name(item_id)}.png" if image else None, "image_sha1": None,
              "settings": "abc"}
    if sc is not None or pq is not None or score is not None:
        record["sub_scores"] = {"editing_success": sc, "over_editing": sc, "naturalness": pq, "artifacts": pq,
                                "SC": sc, "PQ": pq}
    return record


@pytest.fixture
def run(tmp_path):
    """2 editors x 3 GEdit categories, unbalanced; an edit failure, a judge failure, a missing and a corrupt source."""
    out = tmp_path / "out"
    bench = tmp_path / "bench"
    items = [
        BenchmarkItem("bg1", "background_change", "put it on a beach", bench / "bg1.png", language="en"),
        BenchmarkItem("bg2", "background_change", "snowy background", bench / "bg2.png", language="en"),
        BenchmarkItem("bg3", "background_change", "city at night", bench / "bg3_missing.png", language="cn"),
        BenchmarkItem("ca1", "color_alter", HOSTILE_INSTRUCTION, bench / "ca1.png", language="en"),
        BenchmarkItem(ODD_ID, "color_alter", "make the car blue", bench / "ca2.png", language="en"),
        BenchmarkItem("st1", "style_change", "van gogh style", bench / "st1.png", language="en"),
    ]
    for n, item in enumerate(items):
        if item.id == "bg3":
            continue  # missing source
        if item.id == "st1":
            item.image.parent.mkdir(parents=True, exist_ok=True)
            item.image.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")  # corrupt source
            continue
        _png(item.image, (40 * n, 100, 200 - 30 * n))
    records = [
        _rec("alpha", "background_change", "bg1", 6.0, sc=4.0, pq=9.0),
        _rec("alpha", "background_change", "bg2", 7.0, sc=7.0, pq=7.0),
        _rec("alpha", "background_change", "bg3", 8.0, sc=8.0, pq=8.0),
        _rec("alpha", "color_alter", "ca1", None, sc=5.0, pq=None, raw=HOSTILE_ANSWER, stage="score",
             error="unparseable PQ answer"),
        _rec("alpha", "color_alter", ODD_ID, 4.0, sc=2.0, pq=8.0),
        _rec("alpha", "style_change", "st1", 9.0, sc=9.0, pq=9.0),
        _rec("beta", "background_change", "bg1", 5.0, sc=5.0, pq=5.0),
        _rec("beta", "background_change", "bg2", None, raw=None, stage="edit", error=f"edit failed: {HOSTILE_ERROR}",
             image=False),
        _rec("beta", "background_change", "bg3", 3.0, sc=3.0, pq=3.0),
        _rec("beta", "color_alter", "ca1", 2.0, sc=1.0, pq=4.0, raw=HOSTILE_ANSWER_DOM),
    ]
    for n, r in enumerate(records):
        if r["image"]:
            _png(out / r["image"], (20 * n, 200 - 15 * n, 90), size=(180, 240))
    (out / "edits/beta/bg3.png").unlink()  # an edited image gone after scoring
    return out, records, items


# jpeg thumbnails expected in the HTML: sources bg1, bg2, ca1, ca2 (bg3 missing, st1 corrupt);
# edits: alpha's 6 + beta's bg1 and ca1 (bg2 failed to edit, bg3's file deleted)
EXPECTED_THUMBNAILS = 4 + 6 + 2


def test_summary_files_match_aggregate(run):
    out, records, items = run
    paths = write_reports(out, records, items, title=TITLE, thumbnail_size=64)
    assert set(paths) == {"summary.json", "summary.csv", "ranking.csv", "report.md", "scores_by_category.png",
                          "report.html"}
    assert all(p.is_file() and p.stat().st_size > 0 and p.parent == out for p in paths.values())

    summary = json.loads(paths["summary.json"].read_text())
    stats, overall = category_stats(records), editor_overall(records)
    assert list(summary["editors"]) == ["alpha", "beta"]
    for editor, entry in summary["editors"].items():
        assert entry["overall"] == overall[editor]
        assert entry["categories"] == {c: st.to_dict() for c, st in stats[editor].items()}
    bg = summary["editors"]["alpha"]["categories"]["background_change"]
    assert bg["mean"] == pytest.approx(7.0) and bg["std"] == pytest.approx(1.0)  # 6, 7, 8 by hand
    assert bg["ci95"] == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert summary["editors"]["beta"]["overall"]["n_failed"] == 1
    assert summary["editors"]["alpha"]["micro_stats"]["mean"] == pytest.approx((6 + 7 + 8 + 4 + 9) / 5)
    # sub-scores: a missing one (the judge failure's PQ, the edit failure's everything) counts as failed
    sub = summary["editors"]["alpha"]["sub_scores"]["color_alter"]
    assert sub["SC"]["mean"] == pytest.approx((5 + 2) / 2) and sub["PQ"]["n_failed"] == 1
    assert summary["editors"]["beta"]["sub_scores"]["background_change"]["SC"]["n_failed"] == 1

    with open(paths["summary.csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["editor", "category", "n", "n_failed", "n_scored", "mean", "std", "ci95", "min", "max",
                             "flag"]
    overall_rows = ["overall (macro)", "macro, failed = min", "macro, common items", "overall (micro)"]
    assert [(r["editor"], r["category"]) for r in rows] == [
        ("alpha", "background_change"), ("alpha", "color_alter"), ("alpha", "style_change"),
        *(("alpha", row) for row in overall_rows),
        ("beta", "background_change"), ("beta", "color_alter"), *(("beta", row) for row in overall_rows)]
    by_key = {(r["editor"], r["category"]): r for r in rows}
    assert float(by_key["alpha", "overall (macro)"]["mean"]) == pytest.approx(overall["alpha"]["macro"])
    assert float(by_key["beta", "background_change"]["mean"]) == pytest.approx(4.0)
    assert by_key["beta", "color_alter"]["std"] == ""  # undefined for one item: blank, not 0

    md = paths["report.md"].read_text()
    assert "4.00 (1 failed)" in md  # alpha color_alter and beta background_change
    assert "## Failures (2)" in md and "\\<b\\>boom\\</b\\>" in md and "<b>boom" not in md
    assert "the mean of the category means over scored items, so every category weighs the same" in md
    # Escaped for Markdown, not HTML: no tag survives, and the text reads as written (no &#x27; entities).
    assert "\\<script\\>alert(1)\\</script\\>" in md and "document.title='pwned'" in md
    assert "<script>" not in md and "&#" not in md and "&lt;" not in md
    lowest = md.split("## Lowest scores")[1].split("##")[0]
    assert lowest.index("| 2.00 | beta") < lowest.index("| 3.00 | beta")

    with Image.open(paths["scores_by_category.png"]) as png:
        assert png.format == "PNG" and png.width >= 500 and png.height >= 300
        assert len(png.convert("RGB").getcolors(1 << 16)) > 20  # bars, text, not a blank canvas


def test_format_table(run):
    _, records, _ = run
    table = format_table(records)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["editor", "background_change", "color_alter", "style_change"]
    assert lines[2].startswith("alpha") and "7.00" in lines[2] and "4.00 (1 failed)" in lines[2]
    assert lines[3].startswith("beta") and "1/4" in lines[3]
    assert format_table([]) == "no scores recorded"


def test_html_is_self_contained_and_escaped(run):
    out, records, items = run
    html = write_reports(out, records, items, title=TITLE, thumbnail_size=64)["report.html"].read_text()
    # hostile text appears only escaped, in text and in attributes
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html and HOSTILE_ANSWER not in html
    assert "onerror=&quot;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&quot;" in html
    assert "<img src=x" not in html and "<b>boom" not in html
    assert 'ca2 &quot;&lt;i&gt;x&lt;/i&gt;&quot;' in html and ODD_ID not in html
    assert html.count("<script>") == 1  # ours only
    # nothing fetched from elsewhere
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|file:)""", html, re.I)
    assert "url(" not in html and "@import" not in html
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(uris) == EXPECTED_THUMBNAILS
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as thumb:
        assert max(thumb.size) <= 64
    # failures are shown with their error; missing/corrupt images become placeholders
    assert html.count("FAILED (edit stage)") == 1 and html.count("FAILED (score stage)") == 1
    assert "missing: bg3_missing.png" in html and "unreadable: st1.png" in html
    assert 'id="lowest"' in html and 'id="failures"' in html


def test_write_reports_rejects_bad_input(run):
    out, records, items = run
    with pytest.raises(ValueError, match="thumbnail_size"):
        write_reports(out, records, items, thumbnail_size=0)
    with pytest.raises(ValueError, match="score"):
        write_reports(out, [dict(records[0], score="high")], items)


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_export_gedit_layout(run):
    out, records, items = run
    written = export_gedit(out, records, items)
    for editor in ("alpha", "beta"):
        folder = out / "export/gedit" / editor / "qwen25vl/eval_results_new"
        for group in GEDIT_GROUPS:  # calculate_statistics.py opens every one of these
            assert folder / f"{editor}_{group}_gpt_score.csv" in written
    # what the official script does with each row: filter by language, overall = sqrt(semantics * quality)
    expected = {("alpha", "background_change", "en"): [6.0, 7.0], ("alpha", "background_change", "cn"): [8.0],
                ("alpha", "color_alter", "en"): [4.0], ("alpha", "style_change", "en"): [9.0],
                ("beta", "background_change", "en"): [5.0], ("beta", "background_change", "cn"): [3.0],
                ("beta", "color_alter", "en"): [2.0]}
    seen = {}
    for editor in ("alpha", "beta"):
        for group in GEDIT_GROUPS:
            folder = out / f"export/gedit/{editor}/qwen25vl/eval_results_new"
            columns, rows = _read_csv(folder / f"{editor}_{group}_gpt_score.csv")
            assert columns == list(GEDIT_COLUMNS)
            for row in rows:
                overall = math.sqrt(float(row["sementics_score"]) * float(row["quality_score"]))
                seen.setdefault((editor, group, row["instruction_language"]), []).append(round(overall, 9))
                assert row["intersection_exist"] == "False"
    assert seen == expected
    _, rows = _read_csv(out / "export/gedit/alpha/qwen25vl/eval_results_new/alpha_color_alter_gpt_score.csv")
    assert rows[0]["instruction"] == "make the car blue" and rows[0]["edited_image"].endswith(".png")
    _, omitted = _read_csv(out / "export/gedit/beta/qwen25vl/omitted_items.csv")
    assert [(r["item_id"], r["failed_stage"]) for r in omitted] == [("bg2", "edit")]
    _, omitted = _read_csv(out / "export/gedit/alpha/qwen25vl/omitted_items.csv")
    assert [(r["item_id"], r["failed_stage"]) for r in omitted] == [("ca1", "score")]

    export_gedit(out, records, [dataclasses.replace(i, intersection_exist=i.id == "bg1") for i in items])
    _, rows = _read_csv(out / "export/gedit/alpha/qwen25vl/eval_results_new/alpha_background_change_gpt_score.csv")
    assert [r["intersection_exist"] for r in rows] == ["True", "False", "False"]


def test_export_gedit_needs_viescore(run):
    out, records, items = run
    simple = [{k: v for k, v in r.items() if k != "sub_scores"} for r in records]
    with pytest.raises(ValueError, match="viescore"):
        export_gedit(out, simple, items)
    with pytest.raises(ValueError, match="default_language"):
        export_gedit(out, records, [BenchmarkItem(i.id, i.category, i.instruction, i.image) for i in items])
    with pytest.raises(ValueError, match="not in the benchmark"):
        export_gedit(out, records, items[1:])
    assert not (out / "export").exists()


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-extensions", "--no-first-run",
               f"--user-data-dir={cwd / 'chromium-profile'}", "--virtual-time-budget=3000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_html_in_headless_chromium(run, tmp_path):
    if shutil.which("chromium") is None:
        if os.environ.get("EDITJUDGE_REQUIRE_CHROMIUM"):  # set by .ci/run, which installs it
            pytest.fail("chromium is required here but not installed")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    out, records, items = run
    page = write_reports(out, records, items, title=TITLE, thumbnail_size=128)["report.html"]
    result = _chromium("--dump-dom", page.resolve().as_uri(), cwd=tmp_path)
    dom = result.stdout
    assert result.returncode == 0 and "</html>" in dom, result.stderr[-2000:]
    assert 'data-ready="1"' in dom  # our own script ran under the page's Content-Security-Policy
    table = re.search(r'<table id="summary">.*?</table>', dom, re.S).group(0)
    assert len(re.findall(r'<tr class="editor-row">', table)) == 2
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', dom)) == EXPECTED_THUMBNAILS
    # the hostile payloads did nothing
    assert "data-pwned" not in dom.replace("setAttribute(&#x27;data-pwned", "").replace("setAttribute('data-pwned", "")
    assert re.search(r"<title>(.*?)</title>", dom).group(1) == TITLE
    assert '<img src="x"' not in dom and "<img src=x" not in dom

    shot = tmp_path / "screenshot.png"
    result = _chromium("--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", page.resolve().as_uri(),
                       cwd=tmp_path)
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        rgb = image.convert("RGB")
        assert len(rgb.getcolors(1 << 20) or []) > 50  # text, table, chart and thumbnails, not a blank page
        assert rgb.getextrema() != ((255, 255), (255, 255), (255, 255))
