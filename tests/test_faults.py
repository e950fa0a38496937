"""Faults around the pipeline: an unwritable or full output folder, a disk filling up mid-run,
out-of-memory batches in both stages, and judge answers that hold no valid score.

Runs here are in-process (one device runs in this process), so faults can be injected with
monkeypatch; every faulted run is compared with an unfaulted run made the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

import editjudge.edit_stage
import editjudge.jsonl
import editjudge.layout as layout
import editjudge.merge
import editjudge.score_stage
from editjudge.benchmark import load_benchmark
from editjudge.config import load_config
from editjudge.models.editing.diffusers_editor import DiffusersEditor
from editjudge.models.reward.qwen3_vl import Qwen3VLRewardModel
from editjudge.pipeline import PipelineError, run
from tests.conftest import SAMPLE
from tests.test_pipeline import lines, main_py, make_config, snapshot, write

LIMIT = 6


def config_for(tmp_path: Path, judge_path: str, precomputed: Path, out: Path | None = None, **judge):
    data = make_config(tmp_path, judge_path, precomputed)
    data["benchmark"]["limit"] = LIMIT
    data["editing"]["editors"] = [e for e in data["editing"]["editors"] if e["name"] in ("bright", "ip2p")]
    data["reward_model"]["params"].update({"batch_size": 4, **judge})
    if out is not None:
        data["output_dir"] = str(out)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return load_config(write(tmp_path, data))


@pytest.fixture(scope="module")
def unfaulted(tmp_path_factory, judge_path, precomputed_dir):
    tmp = tmp_path_factory.mktemp("unfaulted")
    run(config_for(tmp, judge_path, precomputed_dir), "all")
    return snapshot(tmp / "out")


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A real small file system at ``path``, or a skip where this machine does not allow mounting."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------------------- the output folder


def test_an_output_folder_that_cannot_be_created_is_refused_before_any_model_loads(tmp_path, judge_path,
                                                                                    precomputed_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    data = make_config(tmp_path, judge_path, precomputed_dir, output_dir=str(blocker / "out"))
    result = main_py(write(tmp_path, data))
    assert result.returncode == 2
    assert f"error: output folder {blocker / 'out'} is not writable" in result.stderr
    assert "loaded" not in result.stderr


def test_a_read_only_output_folder_is_refused_before_any_model_loads(tmp_path, judge_path, precomputed_dir):
    with tmpfs(tmp_path / "ro", "size=128m,mode=0755") as folder:
        (folder / "out").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        data = make_config(tmp_path, judge_path, precomputed_dir, output_dir=str(folder / "out"))
        result = main_py(write(tmp_path, data))
    assert result.returncode == 2
    assert "is not writable" in result.stderr and "Read-only file system" in result.stderr
    assert "loaded" not in result.stderr


def test_a_full_disk_is_refused_before_any_model_loads(tmp_path, judge_path, precomputed_dir):
    with tmpfs(tmp_path / "small", "size=8m") as folder:
        data = make_config(tmp_path, judge_path, precomputed_dir, output_dir=str(folder / "out"))
        result = main_py(write(tmp_path, data))
    assert result.returncode == 2
    assert "has only 8.0 MiB free (at least 64 MiB needed to start)" in result.stderr
    assert "loaded" not in result.stderr


def test_low_free_space_is_refused_without_mounting(tmp_path, judge_path, precomputed_dir, monkeypatch):
    """The same check where tmpfs cannot be mounted: the free space as the OS reports it."""
    real = shutil.disk_usage
    monkeypatch.setattr(layout.shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    with pytest.raises(PipelineError, match="has only 10.0 MiB free"):
        run(config_for(tmp_path, judge_path, precomputed_dir), "all")
    assert not (tmp_path / "out" / "edits").exists()


def test_a_disk_that_fills_up_mid_run_stops_cleanly_and_the_rerun_completes(tmp_path, judge_path, precomputed_dir,
                                                                            unfaulted):
    """A real full file system: a tmpfs with room for a few files only (``nr_inodes``)."""
    with tmpfs(tmp_path / "disk", "size=256m,nr_inodes=14") as folder:
        config = config_for(tmp_path, judge_path, precomputed_dir, out=folder / "out")
        with pytest.raises(PipelineError, match="No space left on device.*rerun the same command to resume"):
            run(config, "all")
        part = folder / "out" / ".parts" / "edit-rank0.jsonl"
        kept = len(list((folder / "out" / "edits").rglob("*.png")))
        # It stopped inside stage 1 (6 of 12 images here), with every finished edit's line kept.
        assert 1 <= kept < 2 * LIMIT and len(lines(part)) == kept
        assert not (folder / "out" / "scores.jsonl").exists()
        subprocess.run(["mount", "-o", "remount,nr_inodes=10000", str(folder)], check=True)  # space freed
        run(config, "all")
        assert snapshot(folder / "out") == unfaulted


def test_no_space_mid_run_without_mounting(tmp_path, judge_path, precomputed_dir, unfaulted, monkeypatch):
    """The same fault injected at the third write of result lines (where tmpfs cannot be mounted)."""
    writers = (editjudge.edit_stage, editjudge.score_stage, editjudge.merge)  # every module that appends lines
    real = editjudge.jsonl.append_jsonl
    assert all(module.append_jsonl is real for module in writers)
    calls = []

    def fill_up(path, records):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, records)

    for module in writers:
        monkeypatch.setattr(module, "append_jsonl", fill_up)
    config = config_for(tmp_path, judge_path, precomputed_dir)
    with pytest.raises(PipelineError, match="No space left on device"):
        run(config, "all")
    for module in writers:
        monkeypatch.setattr(module, "append_jsonl", real)
    run(config, "all")
    assert snapshot(tmp_path / "out") == unfaulted


# ------------------------------------------------------------------------------- out of memory


def test_out_of_memory_in_batches_is_backed_off_in_both_stages(tmp_path, judge_path, precomputed_dir,
                                                              monkeypatch, caplog):
    """Every batch of more than one item runs out of memory, in the editor and in the judge: each
    stage backs off (the editor to single items, the judge by halving) and no item is lost."""
    config = config_for(tmp_path / "single", judge_path, precomputed_dir, batch_size=1)
    for editor in config.editing.editors:
        editor.batch_size = 1
    run(config, "all")
    single = snapshot(tmp_path / "single" / "out")

    real_run, real_generate = DiffusersEditor._run, Qwen3VLForConditionalGeneration.generate
    sizes = {"edit": [], "score": []}

    def editor_oom(self, prompts, images, seeds):
        sizes["edit"].append(len(prompts))
        if len(prompts) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real_run(self, prompts, images, seeds)

    def judge_oom(self, *args, **kwargs):
        sizes["score"].append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (injected)")
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(DiffusersEditor, "_run", editor_oom)
    monkeypatch.setattr(Qwen3VLForConditionalGeneration, "generate", judge_oom)
    faulted = config_for(tmp_path, judge_path, precomputed_dir)  # ip2p batch 3, judge batch 4
    with caplog.at_level("WARNING"):
        run(faulted, "all")
    assert 3 in sizes["edit"] and 4 in sizes["score"] and 2 in sizes["score"]  # batches were tried, then split
    def keyless(snap):  # the edit key holds the editor's batch_size (3 here, 1 there) by design
        return {**snap, "manifest": [{k: v for k, v in r.items() if k != "edit_key"} for r in snap["manifest"]]}

    assert keyless(snapshot(tmp_path / "out")) == keyless(single)  # the same images and scores as a run that never batched
    assert "retrying one item at a time" in caplog.text and "out of memory in" in caplog.text
    scores = lines(tmp_path / "out" / "scores.jsonl")
    assert len(scores) == 2 * LIMIT and all(r["error"] is None for r in scores if r["editor"] == "ip2p")


# ------------------------------------------------------------------------------- judge answers


BAD_ANSWERS = {  # instruction of a sample item -> (what the judge answers, the recorded error)
    "Add a small embroidered flag patch on her left shoulder.": ("I cannot judge this image.", "no score found"),
    "Render the portrait as a loose watercolor painting.": ('{"score": 42}', "outside the range"),
    "Change the astronaut's orange flight suit to a deep navy blue.":
        ("Score: 3, and on reflection score: 8", "conflicting scores"),  # (a first JSON score would decide)
}


def test_answers_without_a_valid_score_are_failures_with_the_answer_kept(tmp_path, judge_path, precomputed_dir,
                                                                        monkeypatch):
    real = Qwen3VLRewardModel._score_batch_generate

    def answers(self, requests):
        results = real(self, requests)  # the model still runs; only its answers are replaced
        for i, request in enumerate(requests):
            for instruction, (answer, _) in BAD_ANSWERS.items():
                if instruction in request.user_prompt:
                    results[i] = self._parse(answer)
        return results

    monkeypatch.setattr(Qwen3VLRewardModel, "_score_batch_generate", answers)
    result = run(config_for(tmp_path, judge_path, precomputed_dir), "all")
    out = tmp_path / "out"
    bad = {item.id: BAD_ANSWERS[item.instruction] for item in load_benchmark(SAMPLE, limit=LIMIT)
           if item.instruction in BAD_ANSWERS}
    assert len(bad) == len(BAD_ANSWERS)
    scores = lines(out / "scores.jsonl")
    assert len(scores) == 2 * LIMIT
    failed = [r for r in scores if r["item_id"] in bad]
    assert len(failed) == 2 * len(BAD_ANSWERS)  # both editors' edits of each item
    for r in failed:
        answer, error = bad[r["item_id"]]
        assert r["score"] is None and r["failed_stage"] == "score" and error in r["error"]
        assert r["raw_output"] == answer
    assert all(r["error"] is None for r in scores if r["item_id"] not in bad)
    summary = json.loads((out / "summary.json").read_text())["editors"]
    assert {name: s["overall"]["n_failed"] for name, s in summary.items()} == {"bright": 3, "ip2p": 3}
    md = (out / "report.md").read_text()
    assert "## Failures (6)" in md and "conflicting scores" in md and "outside the range" in md
    assert result["files"]["report.html"].read_text().count("no score found") >= 2
