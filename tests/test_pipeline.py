"""The two-stage pipeline end to end: layout, resume, kills, one vs two worker processes, config errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from editjudge.benchmark import load_benchmark
from editjudge.config import ConfigError, load_config
from editjudge.pipeline import Layout, PipelineError, run
from tests.conftest import MISSING, ROOT, SAMPLE, tiny_editor

EDITORS = ("bright", "same", "ip2p")


def make_config(tmp_path: Path, judge_path: str, precomputed_dir: Path, **extra) -> dict:
    data = {
        "benchmark": {"path": str(SAMPLE), "limit": 8},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "bright", "type": "precomputed", "image_dir": str(precomputed_dir)},
            {"name": "same", "type": "precomputed", "image_dir": str(precomputed_dir),
             "params": {"resize_to_source": False}},
            # A real diffusers pipeline, batched: 8 items in fixed batches of 3.
            {"name": "ip2p", "type": "diffusers", "model_path": tiny_editor("instruct-pix2pix"), "batch_size": 3, "dtype": "float32",
             "params": {"num_inference_steps": 2, "image_guidance_scale": 1.5}},
        ]},
        "reward_model": {"type": "qwen3_vl", "params": {
            "model_path": judge_path, "device": "cpu", "batch_size": 2, "max_new_tokens": 12, "show_progress": False}},
        "output_dir": str(tmp_path / "out"),
        "seed": 0,
    }
    data.update(extra)
    return data


def write(tmp_path: Path, data: dict, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


# CPU kernels split their sums by thread count, so runs compared bit for bit use one thread per process.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def main_py(config_path: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", "--config", config_path, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **ONE_THREAD, **(env or {})))


def lines(path: Path) -> list[dict]:
    """A JSONL file's records without the wall-clock fields that differ between runs."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        record.pop("seconds", None)
    return records


def snapshot(out: Path) -> dict:
    """Everything a run leaves that must not depend on how it was run."""
    layout = Layout(out)
    images = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(layout.edits.rglob("*.png"))}
    return {"manifest": lines(layout.manifest), "scores": lines(layout.scores), "images": images}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, judge_path, precomputed_dir):
    """One uninterrupted single-process run of both stages, in a subprocess like a user's."""
    tmp = tmp_path_factory.mktemp("reference")
    result = main_py(write(tmp, make_config(tmp, judge_path, precomputed_dir)))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out", result


def test_run_writes_the_documented_layout(reference):
    out, result = reference
    items = load_benchmark(SAMPLE, limit=8)
    manifest, scores = lines(out / "edits" / "manifest.jsonl"), lines(out / "scores.jsonl")
    expected_keys = [(e, i.id) for e in EDITORS for i in items]
    assert [(r["editor"], r["item_id"]) for r in manifest] == expected_keys
    assert [(r["editor"], r["item_id"]) for r in scores] == expected_keys
    for record in manifest:
        if record["item_id"] == MISSING and record["editor"] != "ip2p":
            assert record["image"] is None and "no output for item" in record["error"]
        else:
            assert record["error"] is None
            assert (out / record["image"]).is_file() and record["image"].startswith(f"edits/{record['editor']}/")
    by_key = {(r["editor"], r["item_id"]): r for r in scores}
    failed = by_key[("bright", MISSING)]
    assert failed["score"] is None and failed["failed_stage"] == "edit" and failed["error"].startswith("edit failed:")
    scored = [r for r in scores if r["item_id"] != MISSING]
    assert all(r["error"] is None and 0 <= r["score"] <= 10 and r["raw_output"] for r in scored)
    # The resized output was brought back to its source's size, and the manifest says so.
    resized = [r for r in manifest if "resized_from" in r]
    assert [(r["editor"], r["resized_from"]) for r in resized] == [("bright", [40, 30])]
    with Image.open(out / resized[0]["image"]) as image, Image.open(items[1].image) as source:
        assert image.size == source.size
    assert "bright" in result.stdout and "macro" in result.stdout and "report.html: " in result.stdout
    assert (out / "report.html").is_file() and (out / "summary.csv").is_file()
    assert "editjudge.progress: score: " in result.stderr  # the stage bar's per-editor totals (batch lines are DEBUG)
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["editing"]["editors"][0]["name"] == "bright"
    assert not list((out / ".parts").glob("*.jsonl"))


def test_rerun_skips_finished_work_and_duplicates_nothing(reference, tmp_path, judge_path, precomputed_dir):
    out, _ = reference
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    config = load_config(write(tmp_path, make_config(tmp_path, judge_path, precomputed_dir)))
    run(config, "all")
    assert snapshot(copy) == snapshot(out)
    # Only the failed edit is retried; nothing is rescored because nothing changed.
    assert (copy / "edits" / "manifest.jsonl").read_text().count(f'"item_id": "{MISSING}"') == 3


def test_two_worker_processes_equal_one(reference, tmp_path, judge_path, precomputed_dir):
    out, _ = reference
    data = make_config(tmp_path, judge_path, precomputed_dir)
    result = main_py(write(tmp_path, data), "--devices", "cpu,cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage edit: 2 worker(s) on cpu, cpu" in result.stderr
    assert "[rank 1]" in result.stderr
    assert snapshot(tmp_path / "out") == snapshot(out)


def test_torchrun_ranks_equal_one_process(reference, tmp_path, judge_path, precomputed_dir):
    """The multi-node path: every process is a rank of torchrun, rank 0 merges."""
    out, _ = reference
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "main.py", "--config",
                             write(tmp_path, make_config(tmp_path, judge_path, precomputed_dir))],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, **ONE_THREAD))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 1]" in result.stderr and result.stdout.count("report.html: ") == 1  # rank 0 reports
    assert snapshot(tmp_path / "out") == snapshot(out)


@pytest.mark.parametrize("point", ["edit:1", "edit-unrecorded:2", "score:1", "score-unrecorded:0"])
def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(point, reference, tmp_path, judge_path, precomputed_dir):
    out, _ = reference
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["editing"]["editors"][0]["batch_size"] = 2
    config_path = write(tmp_path, data)
    killed = main_py(config_path, env={"EDITJUDGE_KILL_AFTER": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    stage = point.split(":")[0].split("-")[0]
    part = tmp_path / "out" / ".parts" / f"{stage}-rank0.jsonl"
    assert part.read_text().count("\n") >= 2  # the kill left finished work behind, not yet merged
    resumed = main_py(config_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert snapshot(tmp_path / "out") == snapshot(out)


def test_torn_lines_are_redone(reference, tmp_path, judge_path, precomputed_dir):
    out, _ = reference
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    scores = copy / "scores.jsonl"
    text = scores.read_text()
    # Drop the last two records: one entirely, the other torn in the middle as a kill mid-write leaves it.
    kept = text.splitlines(keepends=True)[:-2]
    torn = text.splitlines(keepends=True)[-1][:40]
    scores.write_text("".join(kept))
    (copy / ".parts" / "score-rank0.jsonl").write_text(torn)
    config = load_config(write(tmp_path, make_config(tmp_path, judge_path, precomputed_dir)))
    run(config, "score")
    assert snapshot(copy) == snapshot(out)


def test_changed_scoring_settings_rescore_and_keep_the_old_lines(reference, tmp_path, judge_path, precomputed_dir):
    out, _ = reference
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["reward_model"]["params"]["user_prompt"] = "Rate the brightness of this picture. {\"score\": N}"
    run(load_config(write(tmp_path, data)), "score")
    new, old = lines(copy / "scores.jsonl"), lines(out / "scores.jsonl")
    assert len(new) == len(old) and len({r["settings"] for r in new}) == 1
    assert new[0]["settings"] != old[0]["settings"]
    assert lines(copy / "scores.previous.jsonl") == old
    # Batch size is a speed setting: changing it keeps every score.
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["reward_model"]["params"]["batch_size"] = 3
    run(load_config(write(tmp_path, data)), "score")
    assert lines(copy / "scores.jsonl") == old


def test_an_editor_that_cannot_load_fails_alone(tmp_path, judge_path, precomputed_dir):
    gone = tmp_path / "gone"
    gone.mkdir()
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["benchmark"]["limit"] = 3
    data["editing"]["editors"][1]["image_dir"] = str(gone)
    config = load_config(write(tmp_path, data))
    gone.rmdir()  # valid when checked, gone when the editor loads
    result = run(config, "all")
    scores = lines(tmp_path / "out" / "scores.jsonl")
    same = [r for r in scores if r["editor"] == "same"]
    assert len(same) == 3 and all("editor failed to load" in r["error"] for r in same)
    assert all(r["error"] is None for r in scores if r["editor"] == "bright")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["editors"]
    assert summary["same"]["overall"]["n_failed"] == 3 and summary["bright"]["overall"]["n_failed"] == 0
    assert result["records"] == [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").open()]
    assert "editor failed to load" in (tmp_path / "out" / "report.html").read_text()


def test_bad_configs_fail_before_any_model_loads_naming_every_problem(tmp_path, judge_path, precomputed_dir):
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["editing"]["editors"] = [
        {"name": "a", "type": "precomputed", "image_dir": str(tmp_path / "nowhere")},
        {"name": "b", "type": "precomputed", "image_dir": str(precomputed_dir), "params": {"resize": True}},
        {"name": "a", "type": "precomputed", "image_dir": str(precomputed_dir), "model_path": "x"},
        {"name": "../c", "type": "magic"},
        {"name": "d", "type": "precomputed", "image_dir": str(precomputed_dir), "batch_size": "two"},
        {"name": "e", "type": "diffusers", "model_path": tiny_editor("instruct-pix2pix"), "params": {"image_guidance_scal": 1.5}},
        {"name": "f", "type": "diffusers", "model_path": str(tmp_path / "no-editor")},
    ]
    data["editing"]["device"] = "cpu"
    data["reward_model"]["devices"] = ["gpu0"]
    data["reward_model"]["params"]["model_path"] = str(tmp_path / "no-judge")
    path = write(tmp_path, data)
    result = main_py(path)
    assert result.returncode == 2
    # The command line names every problem found without torch or diffusers, within a second of the plan...
    light = ["editing.device: unknown key", "editing.editors[0].image_dir: ", "is not a folder",
             "editing.editors[1].params.resize: unknown", "editing.editors[2].name: 'a' is used",
             "editing.editors[2].model_path: not used by type 'precomputed'",
             "editing.editors[3].name: '../c'", "editing.editors[3].type: 'magic' is not one of",
             "editing.editors[4].batch_size: expected int", "reward_model.devices: 'gpu0' is not a device"]
    # ... and the model checks (a diffusers pipeline's signature, the judge's files) once those are fixed;
    # load_config, the library's door, names them all at once.
    heavy = ["editing.editors[5].params.image_guidance_scal: not a parameter", "did you mean image_guidance_scale",
             "editing.editors[6].model_path:", "model_path: local folder"]
    for expected in light:
        assert expected in result.stderr, (expected, result.stderr)
    assert "the models and the devices are checked once these are fixed" in result.stderr
    assert not any(expected in result.stderr for expected in heavy), result.stderr
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for expected in light + heavy:
        assert expected in str(info.value), (expected, str(info.value))
    assert "loaded" not in result.stderr and not (tmp_path / "out").exists()


def test_stage_report_alone_reads_what_is_on_disk(reference, tmp_path, judge_path, precomputed_dir):
    out, _ = reference
    data = make_config(tmp_path, judge_path, precomputed_dir, output_dir=str(out))
    result = main_py(write(tmp_path, data), "--stage", "report")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "same" in result.stdout and "loaded" not in result.stderr
    summary = json.loads((out / "summary.json").read_text())["editors"]
    assert summary["bright"]["overall"]["n"] == 8 and summary["bright"]["overall"]["n_failed"] == 1


def test_viescore_rubric_end_to_end(reference, tmp_path, judge_path, precomputed_dir):
    """GEdit's scheme through the real tiny judge: two prompts per edit, every sub-score kept and reported."""
    out, _ = reference
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["reward_model"]["params"].update({"rubric": "viescore", "max_new_tokens": 40})
    config = load_config(write(tmp_path, data))
    result = run(config, "all")
    scores = lines(copy / "scores.jsonl")
    assert len(scores) == 24 and lines(copy / "scores.previous.jsonl") == lines(out / "scores.jsonl")
    scored = [r for r in scores if r["failed_stage"] is None]
    # The two failed edits stay failed; every other edit is scored, or fails loudly where the tiny judge
    # (trained on synthetic pairs) answers the semantics prompt, which now shows it the source photo
    # too, with another prompt's field name.
    unparsed = [r for r in scores if r["failed_stage"] == "score"]
    assert len(scored) + len(unparsed) == 22 and len(scored) >= 6
    assert all(r["error"].startswith("semantics: unparseable judge answer") for r in unparsed)
    for r in scored:
        sub = r["sub_scores"]
        assert set(sub) == {"editing_success", "over_editing", "naturalness", "artifacts", "SC", "PQ", "overall"}
        assert sub["SC"] == min(sub["editing_success"], sub["over_editing"])
        assert r["score"] == pytest.approx((sub["SC"] * sub["PQ"]) ** 0.5)
        assert set(r["raw_outputs"]) == {"semantics", "quality"} and '"naturalness"' in r["raw_outputs"]["quality"]
    summary = json.loads((copy / "summary.json").read_text())["editors"]
    assert "SC" in summary["ip2p"]["sub_scores"][scored[0]["category"]]
    assert result["files"]["report.html"].is_file()
    # The sample's categories are not GEdit-Bench's task types: the export says so (before the run) instead of
    # writing empty files.
    with pytest.raises(PipelineError, match="GEdit-Bench task type"):
        run(config, "report", export=["gedit"])


def test_loader_warnings_are_logged_once_per_run(tmp_path, judge_path, caplog):
    """run() loads the benchmark, then each stage's worker loads it again: only the first says what it skipped."""
    bench = tmp_path / "KRIS_Bench"
    for category, records in {"color_change": {"1": {"ori_img": "1.png", "ins_en": "Make it red."}},
                              "multi-element_composition": {"1": {"ori_img": ["a.png", "b.png"], "ins_en": "Merge."}}
                              }.items():
        (bench / category).mkdir(parents=True)
        (bench / category / "annotation.json").write_text(json.dumps(records))
    Image.new("RGB", (32, 32), "blue").save(bench / "color_change" / "1.png")
    outputs = tmp_path / "outputs"
    (outputs / "color_change").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(outputs / "color_change" / "1.png")
    data = {"benchmark": {"path": str(bench), "format": "kris"},
            "editing": {"devices": ["cpu"], "editors": [{"name": "pre", "type": "precomputed", "image_dir": str(outputs)}]},
            "reward_model": {"type": "qwen3_vl", "params": {"model_path": judge_path, "device": "cpu",
                                                             "max_new_tokens": 4, "show_progress": False}},
            "output_dir": str(tmp_path / "out")}
    with caplog.at_level(logging.WARNING):
        run(load_config(write(tmp_path, data)))
    assert caplog.text.count("skipped 1 multi-image record(s)") == 1
    assert [r["item_id"] for r in lines(Layout(tmp_path / "out").manifest)] == ["color_change/1"]
