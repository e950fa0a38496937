"""Judges people use: a Qwen2.5-VL checkpoint and a LoRA judge (PEFT adapter), through the real model.

The tiny Qwen2.5-VL judge and the tiny LoRA adapter come from ``editjudge.tools.make_tiny_qwen25``
(built on first use under the tiny-model cache, ~1 min on one core).
"""

from __future__ import annotations

import math
import random
import shutil

import pytest

from editjudge.aggregate import spearman
from editjudge.models.reward import Qwen3VLRewardModel
from editjudge.tools.make_tiny_models import brightness_score, synthetic_image

from .conftest import CACHE, SAMPLE

PROMPTS = [
    'Rate the edit "make it red". Reply as {"score": N}.',
    "How good is this image? Give a score from 0 to 10.",
    'Editing instruction: "add a small red hat to the dog sitting on the left of the sofa"\nScore it from 0 to 10.',
]


@pytest.fixture(scope="module")
def qwen25_path() -> str:
    from editjudge.tools.make_tiny_qwen25 import ensure_tiny_qwen25

    return str(ensure_tiny_qwen25(CACHE))


@pytest.fixture(scope="module")
def adapter_path(judge_path) -> str:
    pytest.importorskip("peft")
    from editjudge.tools.make_tiny_qwen25 import ensure_tiny_lora

    return str(ensure_tiny_lora(CACHE, judge_path))


@pytest.fixture(scope="module")
def graded():
    rng = random.Random(1234)
    images = [synthetic_image(rng, level=level) for level in range(11) for _ in range(2)]
    return images, [brightness_score(im) for im in images]


def mixed_batch(n: int = 10):
    rng = random.Random(7)
    modes = ["RGB", "RGBA", "L", "P"]
    return [synthetic_image(rng).convert(modes[i % 4]) for i in range(n)], [PROMPTS[i % 3] for i in range(n)]


def _count_images_seen(model):
    """A hook on the vision tower that counts the images (rows of its grid_thw) it really encoded."""
    import torch

    seen = []

    def hook(module, args, kwargs):
        grids = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.dim() == 2
                 and v.shape[-1] == 3 and not v.is_floating_point()]
        seen.append(int(grids[0].shape[0]))

    return seen, model.model.visual.register_forward_pre_hook(hook, with_kwargs=True)


# ------------------------------------------------------------------------------------------ Qwen2.5-VL


def test_qwen25_vl_judge_batched_and_sequential_agree(qwen25_path):
    judge = Qwen3VLRewardModel(qwen25_path, batch_size=4, max_new_tokens=12, show_progress=False)
    assert type(judge.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(judge.processor).__name__ == "Qwen2_5_VLProcessor"
    images, prompts = mixed_batch(10)
    seen, handle = _count_images_seen(judge.model)
    try:
        batched = judge.batch_evaluate(images, user_prompts=prompts, batch_size=4)
        batched_seen = list(seen)
        sequential = judge.batch_evaluate(images, user_prompts=prompts, use_batch_inference=False)
    finally:
        handle.remove()
    assert all(r.ok for r in batched), [r.error for r in batched]
    assert not any(r.fallback for r in batched + sequential)
    assert [r.score for r in batched] == [r.score for r in sequential]
    assert [r.raw_output for r in batched] == [r.raw_output for r in sequential]
    # Every image reached the Qwen2.5-VL vision tower, several at a time when batched.
    assert sum(batched_seen) == 10 and max(batched_seen) > 1
    assert sum(seen) == 20
    assert judge.batch_score(images, user_prompts=prompts, batch_size=3) == [r.score for r in batched]


def test_qwen25_vl_judge_reads_the_image(qwen25_path, graded):
    judge = Qwen3VLRewardModel(qwen25_path, batch_size=8, max_new_tokens=12, show_progress=False)
    images, levels = graded
    scores = judge.batch_score(images)
    assert not any(math.isnan(s) for s in scores)
    assert spearman(scores, levels) > 0.8, list(zip(levels, scores))


def test_qwen25_vl_judge_in_logits_mode(qwen25_path, graded):
    judge = Qwen3VLRewardModel(qwen25_path, batch_size=8, score_mode="logits", show_progress=False)
    images, levels = graded
    batched = judge.batch_score(images)
    sequential = judge.batch_score(images, use_batch_inference=False)
    assert spearman(batched, levels) > 0.8, list(zip(levels, batched))
    assert max(abs(a - b) for a, b in zip(batched, sequential)) < 1e-4


# ------------------------------------------------------------------------------------------ LoRA judges


def test_lora_adapter_changes_what_the_judge_answers(judge_path, adapter_path, graded):
    """The tiny adapter inverts the judge: base scores rise with brightness, adapted ones fall."""
    images, levels = graded
    base = Qwen3VLRewardModel(judge_path, batch_size=4, max_new_tokens=12, show_progress=False)
    lora = Qwen3VLRewardModel(judge_path, batch_size=4, max_new_tokens=12, show_progress=False,
                              adapter_path=adapter_path)
    assert any("lora_" in name for name, _ in lora.model.named_parameters())
    base_scores, lora_scores = base.batch_score(images), lora.batch_score(images)
    assert spearman(base_scores, levels) > 0.8
    assert spearman(lora_scores, levels) < -0.8, list(zip(levels, lora_scores))
    assert lora.batch_score(images, use_batch_inference=False) == lora_scores
    assert lora.stats.prefill_seconds > 0  # the forward clock still sees the (adapted) model run


def test_merged_adapter_scores_like_the_unmerged_one(judge_path, adapter_path, graded):
    images, levels = graded
    params = dict(model_path=judge_path, adapter_path=adapter_path, batch_size=4, max_new_tokens=12,
                  show_progress=False)
    unmerged = Qwen3VLRewardModel.from_config(params)
    merged = Qwen3VLRewardModel.from_config({**params, "merge_adapter": True})
    assert not any("lora_" in name for name, _ in merged.model.named_parameters())
    assert type(merged.model).__name__ == "Qwen3VLForConditionalGeneration"
    results = merged.batch_evaluate(images)
    assert [r.score for r in results] == unmerged.batch_score(images)
    assert all(r.ok for r in results)
    assert spearman([r.score for r in results], levels) < -0.8  # the merged weights are the adapted ones


def test_adapter_settings_are_checked_before_loading(judge_path, adapter_path, tmp_path):
    def problems(**params):
        return Qwen3VLRewardModel.config_problems({"model_path": judge_path, **params})

    assert problems(adapter_path=adapter_path) == []
    assert problems(adapter_path=adapter_path, merge_adapter=True) == []
    assert problems(adapter_path=str(tmp_path / "missing")) == [f"adapter_path: local folder {tmp_path / 'missing'} does not exist"]
    assert problems(adapter_path=str(tmp_path)) == [f"adapter_path: {tmp_path} has no adapter_config.json (not a PEFT adapter folder)"]
    assert problems(merge_adapter=True) == ["merge_adapter needs adapter_path (the PEFT adapter to merge)"]
    assert problems(adapter_path=adapter_path, merge_adapter="yes") == ["merge_adapter must be true or false, got 'yes'"]
    with pytest.raises(ValueError, match="adapter_path: local folder"):
        Qwen3VLRewardModel(judge_path, adapter_path=str(tmp_path / "missing"))


def test_the_adapter_weights_are_part_of_the_scoring_settings(judge_path, adapter_path, tmp_path):
    """Same path, new adapter weights: the settings hash changes, so the scores are redone."""
    import yaml

    from editjudge.config import load_config
    from editjudge.pipeline import scoring_settings, scoring_settings_hash

    adapter = tmp_path / "adapter"
    shutil.copytree(adapter_path, adapter)

    def settings_hash(**params):
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "benchmark": {"path": str(SAMPLE), "format": "native"},
            "reward_model": {"type": "qwen3_vl", "params": {"model_path": judge_path, **params}},
            "output_dir": str(tmp_path / "out"),
        }))
        return scoring_settings_hash(load_config(config))

    without = settings_hash()
    with_adapter = settings_hash(adapter_path=str(adapter))
    assert with_adapter != without
    assert settings_hash(adapter_path=str(adapter)) == with_adapter
    assert settings_hash(adapter_path=str(adapter), merge_adapter=True) != with_adapter
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one LoRA weight
    weights.write_bytes(bytes(data))
    assert settings_hash(adapter_path=str(adapter)) != with_adapter
    config = load_config(tmp_path / "config.yaml")
    assert len(scoring_settings(config)["judge"]["adapter"]) == 64
    # A relative adapter_path is relative to the config file's folder, wherever the command runs.
    assert settings_hash(adapter_path="adapter") == settings_hash(adapter_path=str(adapter))
    assert load_config(tmp_path / "config.yaml").reward_model.params["adapter_path"] == str(adapter)
