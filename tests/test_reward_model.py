"""The Qwen3-VL reward model on the tiny trained judge (CPU, float32)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from PIL import Image

from editjudge.aggregate import spearman
from editjudge.models.reward import Qwen3VLRewardModel
from editjudge.tools.make_tiny_models import synthetic_image

PROMPTS = [
    'Rate the edit "make it red". Reply as {"score": N}.',
    "How good is this image? Give a score from 0 to 10.",
    'Editing instruction: "add a small red hat to the dog sitting on the left of the sofa"\nScore it from 0 to 10.',
]


def mixed_batch(n: int = 10):
    """Images of different sizes and modes, prompts of different lengths."""
    rng = random.Random(7)
    modes = ["RGB", "RGBA", "L", "P"]
    images = [synthetic_image(rng).convert(modes[i % 4]) for i in range(n)]
    prompts = [PROMPTS[i % 3] for i in range(n)]
    return images, prompts


@pytest.fixture
def fresh_stats(judge):
    judge.stats.__init__()
    return judge.stats


def test_batched_and_sequential_agree_exactly(judge):
    images, prompts = mixed_batch(10)
    assert len({im.size for im in images}) > 3 and {im.mode for im in images} == {"RGB", "RGBA", "L", "P"}
    batched = judge.batch_evaluate(images, user_prompts=prompts, batch_size=4)
    sequential = judge.batch_evaluate(images, user_prompts=prompts, use_batch_inference=False)
    assert all(r.ok for r in batched), [r.error for r in batched]
    assert [r.score for r in batched] == [r.score for r in sequential]
    assert [r.raw_output for r in batched] == [r.raw_output for r in sequential]
    assert not any(r.fallback for r in batched + sequential)
    # And the thin layer returns the same floats in input order.
    assert judge.batch_score(images, user_prompts=prompts, batch_size=3) == [r.score for r in batched]


def test_scores_track_brightness(judge, graded_images):
    images, levels = graded_images
    scores = judge.batch_score(images, user_prompts=[PROMPTS[i % 3] for i in range(len(images))])
    assert not any(math.isnan(s) for s in scores)
    assert spearman(scores, levels) > 0.8, list(zip(levels, scores))


def test_logits_mode_tracks_brightness(logits_judge, graded_images):
    images, levels = graded_images
    scores = logits_judge.batch_score(images)
    assert all(0.0 <= s <= 10.0 for s in scores)
    assert spearman(scores, levels) > 0.8, list(zip(levels, scores))


def test_padding_side_restored_after_success_and_failure(judge, monkeypatch, fresh_stats):
    tokenizer = judge.processor.tokenizer
    assert tokenizer.padding_side == "right"
    images, prompts = mixed_batch(4)
    judge.batch_score(images, user_prompts=prompts)
    assert tokenizer.padding_side == "right"

    sides_seen = []

    def broken_generate(**kwargs):
        sides_seen.append(tokenizer.padding_side)
        raise RuntimeError("injected failure")

    monkeypatch.setattr(judge.model, "generate", broken_generate)
    results = judge.batch_evaluate(images, user_prompts=prompts)
    assert sides_seen and set(sides_seen) == {"left"}
    assert tokenizer.padding_side == "right"
    assert all(not r.ok and "injected failure" in r.error for r in results)
    assert fresh_stats.batch_fallbacks == 1


def _failing_when_batched(model, exc_factory, calls):
    real = model.generate

    def generate(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 1:
            raise exc_factory()
        return real(**kwargs)

    return generate


def test_injected_error_falls_back_for_that_batch_only(judge, monkeypatch, fresh_stats):
    images, prompts = mixed_batch(8)
    expected = judge.batch_evaluate(images, user_prompts=prompts, use_batch_inference=False)
    calls = []
    real = judge.model.generate

    def fail_second_batch(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if len(calls) == 2:
            raise ValueError("injected batch error")
        return real(**kwargs)

    monkeypatch.setattr(judge.model, "generate", fail_second_batch)
    results = judge.batch_evaluate(images, user_prompts=prompts, batch_size=4)
    assert [r.score for r in results] == [r.score for r in expected]
    assert [r.fallback for r in results] == [False] * 4 + [True] * 4
    assert calls == [4, 4, 1, 1, 1, 1]
    assert fresh_stats.batch_fallbacks == 1
    assert "injected batch error" in fresh_stats.fallback_causes[0]


def test_injected_out_of_memory_splits_then_matches_sequential(judge, monkeypatch, fresh_stats):
    images, prompts = mixed_batch(8)
    expected = judge.batch_evaluate(images, user_prompts=prompts, use_batch_inference=False)
    calls = []
    monkeypatch.setattr(judge.model, "generate",
                        _failing_when_batched(judge.model, lambda: torch.OutOfMemoryError("CUDA out of memory"), calls))
    results = judge.batch_evaluate(images, user_prompts=prompts, batch_size=4)
    assert [r.score for r in results] == [r.score for r in expected]
    assert [r.raw_output for r in results] == [r.raw_output for r in expected]
    # 4 -> 2+2 -> 1+1+1+1 for each of the two batches.
    assert fresh_stats.oom_splits == 6
    assert calls.count(1) == 8


def test_corrupt_and_missing_files_fail_alone(judge, tmp_path):
    rng = random.Random(3)
    good = []
    for i in range(3):
        path = tmp_path / f"good{i}.png"
        synthetic_image(rng).save(path)
        good.append(path)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    inputs = [good[0], corrupt, good[1], tmp_path / "missing.png", good[2]]
    results = judge.batch_evaluate(inputs, batch_size=4)
    alone = [judge.score(p) for p in good]
    assert [results[i].score for i in (0, 2, 4)] == alone
    assert math.isnan(results[1].score) and "unreadable image" in results[1].error
    assert math.isnan(results[3].score) and "missing image" in results[3].error
    assert all(results[i].error is None for i in (0, 2, 4))


def test_unparseable_answer_is_a_failure_not_a_score(judge, monkeypatch):
    images, prompts = mixed_batch(3)
    answers = iter(['{"score": 7}', "I cannot judge this image.", '{"score": 42}'])
    monkeypatch.setattr(judge._answer_tokenizer, "batch_decode", lambda ids, **kw: [next(answers) for _ in range(len(ids))])
    results = judge.batch_evaluate(images, batch_size=3)
    assert results[0].score == 7.0
    assert math.isnan(results[1].score) and "no score found" in results[1].error
    assert results[1].raw_output == "I cannot judge this image."
    assert math.isnan(results[2].score) and "outside the range" in results[2].error


def test_logits_mode_matches_hand_computation(logits_judge):
    rng = random.Random(11)
    images = [synthetic_image(rng, level=level) for level in (1, 5, 9)]
    results = logits_judge.batch_evaluate(images, user_prompts=PROMPTS, batch_size=3)
    processor, model = logits_judge.processor, logits_judge.model
    digit_ids = [processor.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    for image, prompt, result in zip(images, PROMPTS, results):
        messages = logits_judge._build_messages(image, logits_judge.system_prompt, prompt)
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + '{"score": '
        with torch.no_grad():
            first = model(**processor(text=[text], images=[image], return_tensors="pt")).logits[0, -1].softmax(-1)
            after_one = model(**processor(text=[text + "1"], images=[image], return_tensors="pt")).logits[0, -1].softmax(-1)
        p = [float(first[i]) for i in digit_ids]
        q = float(after_one[digit_ids[0]])
        weights = {d: p[d] for d in range(10) if d != 1}
        weights[1] = p[1] * (1 - q)
        weights[10] = p[1] * q
        expected = sum(v * w for v, w in weights.items()) / sum(weights.values())
        assert result.ok and 0 <= result.score <= 10
        assert result.score == pytest.approx(expected, abs=1e-4)


def test_messages_are_exactly_system_then_images_then_prompt(judge):
    edited, source = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (255, 0, 0))
    assert judge._build_messages(edited, "SYS", "USER", source) == [
        {"role": "system", "content": [{"type": "text", "text": "SYS"}]},
        {"role": "user", "content": [
            {"type": "image", "image": source},
            {"type": "image", "image": edited},
            {"type": "text", "text": "USER"},
        ]},
    ]
    assert judge._build_messages(edited, "SYS", "USER")[1]["content"] == [
        {"type": "image", "image": edited}, {"type": "text", "text": "USER"}]


def test_instruction_fills_template_and_keeps_literal_braces(judge, monkeypatch):
    seen = []
    real = judge._score_batch

    def spy(requests):
        seen.extend(r.user_prompt for r in requests)
        return real(requests)

    monkeypatch.setattr(judge, "_score_batch", spy)
    images, _ = mixed_batch(2)
    judge.batch_score(images, user_prompts='Edit: "{instruction}". Answer {"score": N}.', instructions=["a", "b"])
    assert seen == ['Edit: "a". Answer {"score": N}.', 'Edit: "b". Answer {"score": N}.']


def test_list_length_mismatch_names_the_lengths(judge):
    images, _ = mixed_batch(3)
    with pytest.raises(ValueError, match="user_prompts has 2 entries but edited_images has 3"):
        judge.batch_score(images, user_prompts=["a", "b"])
    with pytest.raises(ValueError, match="original_images has 1 entries but edited_images has 3"):
        judge.batch_score(images, original_images=[images[0]])


def test_compare_with_original_sends_source_then_edited(judge_path, monkeypatch):
    compare = Qwen3VLRewardModel(judge_path, compare_with_original=True, max_new_tokens=12, show_progress=False)
    source, edited = Image.new("RGB", (32, 32), (20, 20, 20)), Image.new("RGB", (128, 64), (230, 230, 230))
    grids = []
    real = compare.model.generate

    def spy(**kwargs):
        grids.append(kwargs["image_grid_thw"].tolist())
        return real(**kwargs)

    monkeypatch.setattr(compare.model, "generate", spy)
    results = compare.batch_evaluate([edited, edited], original_images=[source, source])
    # One batch, four images: (source 2x2 patches, edited 4x8 patches) per item, in that order.
    assert grids == [[[1, 2, 2], [1, 4, 8], [1, 2, 2], [1, 4, 8]]]
    assert all(r.ok for r in results), [r.raw_output for r in results]
    with pytest.raises(ValueError, match="original_images must be given"):
        compare.batch_score([edited])


def test_from_config_rejects_unknown_keys(judge_path):
    with pytest.raises(ValueError, match=r"batchsize: unknown key; did you mean 'batch_size'\?"):
        Qwen3VLRewardModel.from_config({"model_path": judge_path, "batchsize": 4})
    model = Qwen3VLRewardModel.from_config({"model_path": judge_path, "batch_size": 2, "use_batch_inference": False,
                                            "show_progress": False})
    assert model.batch_size == 2 and model.use_batch_inference is False
    assert model.device.type == "cpu" and model.dtype == torch.float32


def test_invalid_settings_fail_before_loading(tmp_path):
    with pytest.raises(ValueError) as info:
        Qwen3VLRewardModel(str(tmp_path / "nothing"), batch_size=0, score_mode="vibes", dtype="int3")
    message = str(info.value)
    assert "batch_size" in message and "score_mode" in message and "dtype" in message


def test_max_pixels_changes_image_tokens(judge_path):
    small = Qwen3VLRewardModel(judge_path, max_pixels=32 * 32, show_progress=False)
    image = Image.new("RGB", (128, 128), (90, 90, 90))
    messages = [small._build_messages(image, "s", "u")]
    count = small.processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                return_dict=True, return_tensors="pt")["input_ids"]
    image_pad = small.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((count == image_pad).sum()) == 1  # 32x32 pixels = 2x2 patches = one merged token


def test_the_judge_module_and_its_inputs_stay_under_500_lines():
    """One concern per module (issue 22): the batching recipe in qwen3_vl.py, its inputs in qwen3_vl_inputs.py."""
    from pathlib import Path

    from editjudge.models.reward import qwen3_vl, qwen3_vl_inputs

    for module in (qwen3_vl, qwen3_vl_inputs):
        lines = len(Path(module.__file__).read_text().splitlines())
        assert lines < 500, f"{module.__name__} has {lines} lines"
