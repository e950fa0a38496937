"""Gaps found by injecting bugs (issue 18): each test here failed with its bug injected into src/.

1. The tokenizer's padding side is restored when an interrupt escapes ``batch_evaluate``.
2. Merging keeps the newest line for a key: directly (``merge_stage``) and on a rerun that turns
   a failed edit into a scored one once the missing precomputed output is supplied.
3. ``raw_output`` is the generated ids decoded from exactly the prompt length on.
4. A rerun with nothing changed gives the judge nothing to score (counted, not read from a log).

The judge is the real tiny Qwen3-VL through its real processor.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageEnhance

from editjudge.benchmark import load_benchmark
from editjudge.config import load_config
from editjudge.models.reward import Qwen3VLRewardModel
from editjudge.pipeline import Layout, load_items, merge_stage, run, scoring_settings_hash
from editjudge.tools.make_tiny_models import synthetic_image
from tests.conftest import MISSING, SAMPLE

LIMIT = 8  # the first 8 sample items; MISSING is the 8th


def varied(n: int):
    """Images of different sizes with prompts of different lengths, so that a batch is left-padded."""
    rng = random.Random(18)
    prompts = ['Rate it. Reply as {"score": N}.',
               'Editing instruction: "put a small red hat on the dog on the left of the sofa". Score it 0-10.']
    return [synthetic_image(rng) for _ in range(n)], [prompts[i % 2] for i in range(n)]


# ---------------------------------------------------------------------------------------- 1. padding side


@pytest.mark.parametrize("mode", ["generate", "logits"])
@pytest.mark.parametrize("where", ["processor", "model"])
def test_padding_side_restored_when_an_interrupt_escapes(request, monkeypatch, mode, where):
    """A KeyboardInterrupt is not the judge's to catch: it escapes, and the tokenizer is left as found."""
    judge = request.getfixturevalue("judge" if mode == "generate" else "logits_judge")
    tokenizer = judge.processor.tokenizer
    images, prompts = varied(4)
    expected = judge.batch_evaluate(images, user_prompts=prompts)
    before = tokenizer.padding_side
    assert before == "right"
    sides_seen = []
    handle = None
    if where == "processor":
        # The real processor pads the batch, then the interrupt arrives (while the side is switched to left).
        processor_class = type(judge.processor)
        real_call = processor_class.__call__

        def interrupted(self, *args, **kwargs):
            real_call(self, *args, **kwargs)
            sides_seen.append(tokenizer.padding_side)
            raise KeyboardInterrupt("injected interrupt in the processor")

        monkeypatch.setattr(processor_class, "__call__", interrupted)
    else:
        # The real forward pass runs, then the interrupt arrives from inside generate / the logits call.
        def hook(module, args, output):
            sides_seen.append(tokenizer.padding_side)
            raise KeyboardInterrupt("injected interrupt in the model")

        handle = judge.model.register_forward_hook(hook)
    try:
        with pytest.raises(KeyboardInterrupt, match="injected interrupt"):
            judge.batch_evaluate(images, user_prompts=prompts)
    finally:
        if handle is not None:
            handle.remove()
        monkeypatch.undo()
        after = tokenizer.padding_side
        tokenizer.padding_side = before  # the judge is shared: a failure here must not leak into other tests
    assert sides_seen, "the interrupt was never raised"
    if where == "processor":
        assert sides_seen == ["left"]  # the interrupt came while the judge had switched the side
    assert after == before
    # The judge is still usable and scores as before.
    again = judge.batch_evaluate(images, user_prompts=prompts)
    assert [(r.score, r.raw_output) for r in again] == [(r.score, r.raw_output) for r in expected]


# ---------------------------------------------------------------------------------------- 3. trimming


@pytest.mark.parametrize("batched", [True, False])
def test_raw_output_is_decoded_from_exactly_the_prompt_length(judge, monkeypatch, batched):
    tokenizer = judge.processor.tokenizer
    images, prompts = varied(6)
    calls = []
    real_generate = judge.model.generate

    def spy(**kwargs):
        generated = real_generate(**kwargs)
        calls.append((kwargs["input_ids"].shape[1], generated))
        return generated

    monkeypatch.setattr(judge.model, "generate", spy)
    monkeypatch.setattr(judge, "group_by_length", False)  # batches in input order, so rows map to items
    results = judge.batch_evaluate(images, user_prompts=prompts, batch_size=4, use_batch_inference=batched)
    assert [len(g) for _, g in calls] == ([4, 2] if batched else [1] * 6)
    assert all(r.ok for r in results), [r.error for r in results]

    def decoded(offset: int) -> list[str]:
        return [text for prompt_length, generated in calls
                for text in tokenizer.batch_decode(generated[:, prompt_length + offset:], skip_special_tokens=True,
                                                   clean_up_tokenization_spaces=False)]

    expected = decoded(0)
    # The check can tell a trim one token early or late from the right one.
    assert all(a != b for shift in (-1, 1) for a, b in zip(decoded(shift), expected))
    assert [r.raw_output for r in results] == expected


# ---------------------------------------------------------------------------------------- the pipeline


def pipeline_config(root: Path, judge_path: str, images: Path) -> Path:
    """A run of one precomputed editor over the first sample items, scored by the tiny judge."""
    data = {
        "benchmark": {"path": str(SAMPLE), "limit": LIMIT},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "bright", "type": "precomputed", "image_dir": str(images)}]},
        "reward_model": {"type": "qwen3_vl", "params": {
            "model_path": judge_path, "device": "cpu", "batch_size": 4, "max_new_tokens": 12,
            "show_progress": False}},
        "output_dir": str(root / "out"),
        "seed": 0,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def first_run(tmp_path, judge_path, precomputed_dir):
    """A finished run (edit, score) whose editor had no output for MISSING; its images folder is its own."""
    images = tmp_path / "images"
    shutil.copytree(precomputed_dir, images)
    assert not list(images.glob(f"{MISSING}.*"))
    config = load_config(pipeline_config(tmp_path, judge_path, images))
    run(config, "edit")
    run(config, "score")
    out = Layout(Path(config.output_dir))
    by_key = {r["item_id"]: r for r in records(out.scores)}
    assert len(by_key) == LIMIT and by_key[MISSING]["failed_stage"] == "edit"
    assert all(r["score"] is not None for item, r in by_key.items() if item != MISSING)
    return config, images


class JudgeCounter:
    """Counts the items the real judge is given (it still scores them)."""

    def __init__(self, monkeypatch):
        self.items: list[str] = []
        real = Qwen3VLRewardModel.batch_evaluate

        def counted(model, edited_images, *args, **kwargs):
            edited_images = list(edited_images)
            self.items += [Path(p).name for p in edited_images]
            return real(model, edited_images, *args, **kwargs)

        monkeypatch.setattr(Qwen3VLRewardModel, "batch_evaluate", counted)


def test_rerun_with_nothing_changed_gives_the_judge_nothing(first_run, monkeypatch):
    config, _ = first_run
    out = Layout(Path(config.output_dir))
    before = out.scores.read_text()
    counter = JudgeCounter(monkeypatch)
    run(config, "edit")
    run(config, "score")
    assert counter.items == []
    assert out.scores.read_text() == before
    # The counter does see the judge's work: overwriting rescores the 7 pairs that have an edit.
    run(config, "score", overwrite=True)
    assert sorted(counter.items) == sorted(f"{item.id}.png" for item in load_benchmark(SAMPLE, limit=LIMIT)
                                           if item.id != MISSING)


def test_rerun_after_the_missing_output_is_supplied_keeps_the_new_lines(first_run):
    config, images = first_run
    out = Layout(Path(config.output_dir))
    item = next(i for i in load_benchmark(SAMPLE, limit=LIMIT) if i.id == MISSING)
    ImageEnhance.Brightness(Image.open(item.image).convert("RGB")).enhance(1.3).save(images / f"{MISSING}.png")
    run(config, "edit")
    run(config, "score")
    manifest = [r for r in records(out.manifest) if r["item_id"] == MISSING]
    assert len(manifest) == 1 and manifest[0]["error"] is None and manifest[0]["image"], manifest
    scores = [r for r in records(out.scores) if r["item_id"] == MISSING]
    assert len(scores) == 1, scores
    assert scores[0]["error"] is None and scores[0]["failed_stage"] is None and 0 <= scores[0]["score"] <= 10
    assert scores[0]["image_sha1"] == manifest[0]["sha1"]
    assert len(records(out.scores)) == len(records(out.manifest)) == LIMIT


# ---------------------------------------------------------------------------------------- 2. merge, directly


@pytest.mark.parametrize("stage", ["edit", "score"])
def test_merge_keeps_the_newest_line_for_a_key(tmp_path, judge_path, precomputed_dir, stage):
    """A key in both the merged file (older) and a worker's part (newer): the part's line is kept."""
    config = load_config(pipeline_config(tmp_path, judge_path, precomputed_dir))
    items = load_items(config)
    out = Layout(Path(config.output_dir))
    settings = scoring_settings_hash(config)
    first, missing = items[0], next(i for i in items if i.id == MISSING)

    def line(item, error: str | None, sha1: str | None) -> dict:
        image = None if error else f"edits/bright/{item.id}.png"
        if stage == "edit":
            return {"editor": "bright", "item_id": item.id, "category": item.category, "image": image,
                    "sha1": sha1, "seed": 0, "seconds": 0.0, "error": error}
        return {"item_id": item.id, "category": item.category, "editor": "bright",
                "score": None if error else 7.0, "raw_output": None if error else '{"score": 7}', "error": error,
                "fallback": False, "failed_stage": "edit" if error else None, "image": image,
                "image_sha1": sha1, "settings": settings}

    target = out.manifest if stage == "edit" else out.scores
    target.parent.mkdir(parents=True)
    older = [line(missing, "no output for item", None), line(first, None, "a" * 40)]
    newer = line(missing, None, "b" * 40)
    target.write_text("".join(json.dumps(r) + "\n" for r in older))
    part = out.part(stage, 0)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_text(json.dumps(newer) + "\n")
    assert merge_stage(config, stage, items) == 2
    merged = records(target)
    assert merged == [older[1], newer]  # benchmark order; the newer line for MISSING, once
    assert not part.exists()
