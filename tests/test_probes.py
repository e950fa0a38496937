"""Probes (does this judge see what it should?) and the drift canary (issue 24, items 4 and 5).

The demo's verdict is decided by the real tiny judge through the CLI; the pass/fail logic is checked
on fake score functions whose behaviour is known; the canary is made from a real scored run and
rescored with the same judge.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from PIL import Image

from editjudge.cli import main as cli
from tests.conftest import CACHE, SAMPLE

# ------------------------------------------------------------------------------- a demo-like run, scored


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, judge_path) -> tuple[str, Path]:
    """configs/demo.yaml's precomputed editors (good-edits first) on 6 sample items, with the real tiny
    brightness judge, edited and scored in this process."""
    from editjudge.tools.make_demo_outputs import ensure_demo_outputs

    folders = ensure_demo_outputs(CACHE)
    root = tmp_path_factory.mktemp("probes")
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text())
    data["benchmark"] = {"path": str(SAMPLE), "format": "native", "limit": 6}
    data["editing"]["editors"] = [{"name": name, "type": "precomputed", "image_dir": str(folders[name])}
                                  for name in ("good-edits", "bad-edits")]
    data["reward_model"]["params"].update(model_path=judge_path, show_progress=False)
    data["output_dir"] = str(root / "out")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    assert cli(["--config", str(config), "--log-level", "WARNING"]) == 0
    return str(config), root / "out"


def test_the_demo_brightness_judge_is_unfit_and_the_reports_say_why(scored_run, capsys):
    """The tiny judge rates brightness: the unchanged source, white and noise score middling to high and a
    bright edit scores as high under another item's instruction; black passes only by being dark."""
    config, out = scored_run
    capsys.readouterr()
    assert cli(["probe", "--config", config, "--limit", "6"]) == 1
    printed = capsys.readouterr().out
    result = json.loads((out / "probes.json").read_text())
    state = {p["name"]: p["passed"] for p in result["probes"]}
    assert state == {"unchanged": False, "black": True, "white": False, "noise": False,
                     "wrong_instruction": False, "repeat": True}, state
    by = {p["name"]: p for p in result["probes"]}
    assert by["wrong_instruction"]["mean"] > by["black"]["mean"] + 5  # bright edits stay bright whatever is asked
    assert {row["instruction_of"] for row in by["wrong_instruction"]["scores"]} <= {
        row["item_id"] for row in by["unchanged"]["scores"]}
    assert result["reference"]["n"] == 6 and result["reference"]["score"] > 7  # good-edits with their instructions
    text = result["verdict"]["text"]
    assert text.startswith("this judge is unfit for rubric simple: it scores the unchanged source")
    assert "reads brightness, not quality" in text and text in printed
    assert "unchanged          FAIL" in printed and "black              pass" in printed
    # scores.jsonl exists: the reports were written again, with the probes
    md = (out / "report.md").read_text()
    assert "## Probes" in md and "| white | FAIL |" in md
    assert f"judge settings {result['judge']['settings_hash'][:12]}" in md  # which judge the probes saw
    html = (out / "report.html").read_text()
    assert '<h2 id="probes">Probes</h2>' in html and "item&#x27;s instruction" in html


# ------------------------------------------------------------------------------- the logic, on fakes


def _items(n: int = 4):
    from editjudge.benchmark import load_benchmark

    items = load_benchmark(SAMPLE)
    return [items[k] for k in range(0, 4 * n, 4)][:n]  # several categories


def _fake(items, edits, rng: random.Random | None = None, unchanged: float = 1.0):
    """A judge that sees: an edit with its own instruction scores 8, the source or another instruction 1,
    a blank or noise image 1; with ``rng`` it adds noise to every score (a sampling judge)."""
    right = {str(edits[item.id]): item.instruction for item in items if item.id in edits}
    sources = {str(item.image) for item in items}

    def score(images, instructions, srcs):
        out = []
        for image, instruction in zip(images, instructions):
            if isinstance(image, Image.Image):
                value = 1.0
            elif str(image) in sources:
                value = unchanged
            else:
                value = 8.0 if right.get(str(image)) == instruction else 1.0
            if rng is not None:
                value = min(10.0, max(0.0, value + rng.uniform(-2, 2)))
            out.append({"score": value, "error": None})
        return out

    return score


def test_a_judge_that_sees_passes_every_probe(precomputed_dir):
    from editjudge.trust.probe import run_probes

    items = _items()
    edits = {item.id: precomputed_dir / f"{item.id}.png" for item in items}
    result = run_probes(_fake(items, edits), items, edits, (0, 10), rubric="simple")
    assert [p["passed"] for p in result["probes"]] == [True] * 6
    assert result["verdict"]["fit"] is True and result["verdict"]["text"].startswith("this judge passes the probes")
    assert result["reference"]["score"] == 8.0 and result["probes"][4]["mean"] == 1.0


def test_a_sampling_judge_fails_repeat_and_the_threshold_is_strict(precomputed_dir):
    from editjudge.trust.probe import low_threshold, probe_size, repeat_threshold, run_probes

    assert (probe_size((4000, 3000)), probe_size((384, 255))) == ((1024, 768), (384, 255))
    assert (low_threshold((0, 10)), low_threshold((1, 5)), repeat_threshold((0, 25))) == (3.0, 2.2, 0.5)
    items = _items()
    edits = {item.id: precomputed_dir / f"{item.id}.png" for item in items}
    sampled = run_probes(_fake(items, edits, rng=random.Random(0)), items, edits, (0, 10))
    repeat = sampled["probes"][-1]
    assert repeat["passed"] is False and repeat["mean"] > 0.2 and repeat["n_different"] == 4
    assert "answers the same input differently" in sampled["verdict"]["text"]
    at = run_probes(_fake(items, edits, unchanged=3.0), items, edits, (0, 10))  # exactly at the threshold: fails
    below = run_probes(_fake(items, edits, unchanged=2.9), items, edits, (0, 10))
    assert (at["probes"][0]["passed"], below["probes"][0]["passed"]) == (False, True)
    assert at["verdict"]["failed"] == ["unchanged"]


def test_without_edits_wrong_instruction_is_skipped_with_its_reason_and_rubric_views_are_read():
    from editjudge.trust.probe import run_probes, view_value, wrong_partners

    items = _items()
    result = run_probes(_fake(items, {}), items, None, (0, 10), no_edits_reason="no edits of good-edits")
    wrong = result["probes"][4]
    assert wrong["passed"] is None and wrong["skipped"] == "no edits of good-edits"
    assert result["verdict"]["fit"] is True and "wrong_instruction skipped" in result["verdict"]["text"]
    assert result["probes"][-1]["shows"].endswith("(the sources)")
    # semantics reads SC, quality PQ, when the rubric gives them; a failed item reads nothing
    fields = {"score": 5.0, "sub_scores": {"SC": 2.0, "PQ": 9.0}}
    assert view_value(fields, "semantics") == (2.0, "SC") and view_value(fields, "quality") == (9.0, "PQ")
    assert view_value({"score": 4.0}, "semantics") == (4.0, "score")
    assert view_value({"score": None, "sub_scores": {"SC": 2.0}}, "semantics") == (None, "score")
    partners = wrong_partners(items)
    assert all(items[j].category != item.category for item, j in zip(items, partners))


def test_the_probes_section_is_escaped(tmp_path):
    from editjudge.benchmark import BenchmarkItem
    from editjudge.report import write_reports

    hostile = "<script>alert(1)</script>"
    (tmp_path / "probes.json").write_text(json.dumps({
        "rubric": hostile, "verdict": {"fit": False, "text": f"this judge is unfit for rubric {hostile}"},
        "probes": [{"name": "<b>x</b>", "shows": hostile, "expect": "low", "passed": False, "mean": 4.0,
                    "rule": "mean below 3", "skipped": None}]}))
    items = [BenchmarkItem("i0", "c", "make it red", tmp_path / "i0.png", language="en")]
    records = [{"item_id": "i0", "category": "c", "editor": "e", "score": 5.0, "raw_output": "x", "error": None,
                "fallback": False, "failed_stage": None, "image": None, "image_sha1": None, "settings": "s"}]
    write_reports(tmp_path, records, items)
    html = (tmp_path / "report.html").read_text()
    section = html.split('<h2 id="probes">', 1)[1].split("<h2", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section and "<script>" not in section
    assert "&lt;b&gt;x&lt;/b&gt;" in section and '<td class="fail">FAIL</td>' in section
    assert "\\<script\\>" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------------------- the drift canary


def test_the_canary_is_made_rescored_and_catches_drift_and_changed_images(scored_run, tmp_path, capsys):
    config, out = scored_run
    file = tmp_path / "canary" / "canary.json"
    file.parent.mkdir()
    assert cli(["canary", "make", "--config", config, "--from", str(out), "--n", "4", str(file)]) == 0
    data = json.loads(file.read_text())
    assert len(data["items"]) == 4 and data["judge"]["rubric"] == "simple" and data["pass_mark"] == 5.0
    scores = [e["score"] for e in data["items"]]
    assert scores == sorted(scores) and scores[0] < 5 <= scores[-1]  # spread over the range: both verdicts
    assert all((file.parent / e["edit"]).is_file() and (file.parent / e["source"]).is_file() for e in data["items"])

    capsys.readouterr()
    assert cli(["canary", "check", "--config", config, str(file)]) == 0  # the same judge: no drift
    assert "mean absolute drift 0.000, 0 changed verdict(s)" in capsys.readouterr().out

    data["items"][0]["score"] += 6.0  # a judge that once gave this item 6 more (crossing the pass mark)
    file.write_text(json.dumps(data))
    assert cli(["--config", config, "--canary", str(file), "--log-level", "WARNING"]) == 0  # warn only
    record = json.loads((out / "summary.json").read_text())["canary"]
    assert record["mean_abs_diff"] == pytest.approx(1.5) and record["over"] is False
    assert [c["item_id"] for c in record["changed"]] == [data["items"][0]["item_id"]]
    assert record["changed"][0]["why"].startswith("crossed the pass mark 5")
    assert "mean absolute drift 1.50, 1 changed verdict(s)" in (out / "report.md").read_text()
    assert "1 changed verdict(s)" in capsys.readouterr().err

    # over --canary-max-drift: stop before scoring, exit 1
    assert cli(["--config", config, "--canary", str(file), "--canary-max-drift", "1.0", "--stage", "score",
                "--log-level", "WARNING"]) == 1
    assert "canary drift 1.500 is over --canary-max-drift 1" in capsys.readouterr().err

    # a changed image, a missing or corrupt file: configuration errors before any work
    fresh = tmp_path / "never"
    edit = file.parent / data["items"][1]["edit"]
    edit.write_bytes(edit.read_bytes() + b"\0")
    assert cli(["--config", config, "--canary", str(file), "--output-dir", str(fresh)]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err and not fresh.exists()
    assert cli(["--config", config, "--canary", str(tmp_path / "none.json"), "--output-dir", str(fresh)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli(["--config", config, "--canary", str(tmp_path / "bad.json"), "--output-dir", str(fresh)]) == 2
    assert "not readable JSON" in capsys.readouterr().err and not fresh.exists()


def test_with_a_rubric_the_probes_read_its_semantics_and_quality(scored_run, tmp_path, capsys):
    """viescore through the real judge path: unchanged and wrong_instruction read SC, the blank images PQ."""
    config, _ = scored_run
    out = tmp_path / "vs"
    assert cli(["probe", "--config", config, "--limit", "3", "--output-dir", str(out),
                "--set", "reward_model.params.rubric=viescore"]) == 1
    result = json.loads((out / "probes.json").read_text())
    read = {p["name"]: p["read"] for p in result["probes"]}
    assert read["unchanged"] == ["SC"] and read["black"] == ["PQ"] and read["white"] == ["PQ"], read
    assert result["probes"][4]["skipped"].startswith("no edits of the first editor, good-edits")
    assert result["verdict"]["text"].startswith("this judge is unfit for rubric viescore")
    assert "wrong_instruction  skipped" in capsys.readouterr().out
