"""The speed options leave scores unchanged (tiny judge, CPU, float32) and do what they say."""

from __future__ import annotations

import importlib.util
import math
import random
import threading

import time

import pytest
import torch

from editjudge.models.reward import Qwen3VLRewardModel, ScoringStats
from editjudge.models.reward.qwen3_vl import ForwardClock
from editjudge.tools.make_tiny_models import synthetic_image

PROMPTS = [
    'Rate the edit "make it red". Reply as {"score": N}.',
    "How good is this image? Give a score from 0 to 10.",
    'Editing instruction: "add a small red hat to the dog sitting on the left of the sofa"\nScore it from 0 to 10.',
]
OFF = {"group_by_length": False, "prefetch": False, "stop_early": False}


def varied(n: int = 14, seed: int = 21):
    """Images of random sizes with prompts of three lengths: enough spread for grouping to reorder."""
    rng = random.Random(seed)
    return [synthetic_image(rng) for _ in range(n)], [PROMPTS[i % 3] for i in range(n)]


def run(judge, monkeypatch, settings: dict, images, prompts, **call):
    with monkeypatch.context() as m:
        for key, value in settings.items():
            m.setattr(judge, key, value)
        m.setattr(judge, "stats", ScoringStats())
        return judge.batch_evaluate(images, user_prompts=prompts, **call), judge.stats


def batches_seen(judge, monkeypatch) -> list[list[int]]:
    seen = []
    real = judge._score_batch

    def spy(requests):
        seen.append([r.index for r in requests])
        return real(requests)

    monkeypatch.setattr(judge, "_score_batch", spy)
    return seen


@pytest.mark.parametrize("option", ["all", "group_by_length", "prefetch", "stop_early"])
def test_generate_scores_unchanged_by_speed_options(judge, monkeypatch, option):
    images, prompts = varied()
    on = {k: True for k in OFF} if option == "all" else {**OFF, option: True}
    expected, plain_stats = run(judge, monkeypatch, OFF, images, prompts, batch_size=4)
    results, stats = run(judge, monkeypatch, on, images, prompts, batch_size=4)
    assert all(r.ok for r in expected), [r.error for r in expected]
    assert [r.score for r in results] == [r.score for r in expected]
    assert [r.raw_output for r in results] == [r.raw_output for r in expected]
    assert not any(r.fallback for r in results)
    if on["group_by_length"]:
        assert stats.padding_tokens < plain_stats.padding_tokens
    if on["stop_early"]:
        # The judge ends with an end-of-sequence token; early stopping saves that step for every row.
        assert stats.decode_tokens < plain_stats.decode_tokens


@pytest.mark.parametrize("option", ["all", "group_by_length", "prefetch"])
def test_logits_scores_unchanged_by_speed_options(logits_judge, monkeypatch, option):
    images, prompts = varied()
    on = {k: True for k in OFF} if option == "all" else {**OFF, option: True}
    expected, _ = run(logits_judge, monkeypatch, OFF, images, prompts, batch_size=4)
    results, _ = run(logits_judge, monkeypatch, on, images, prompts, batch_size=4)
    assert all(r.ok for r in results)
    if option == "prefetch":
        # Same batches, same arithmetic: the very same floats.
        assert [r.score for r in results] == [r.score for r in expected]
    else:
        # Other batch neighbours change float32 rounding in the last bits (as batched vs sequential does).
        assert [r.score for r in results] == pytest.approx([r.score for r in expected], abs=1e-5)


def test_grouping_batches_similar_lengths_and_returns_input_order(judge, monkeypatch):
    images, prompts = varied()
    lengths = judge._estimated_lengths(images, [None] * len(images), [judge.system_prompt] * len(images), prompts)
    seen = batches_seen(judge, monkeypatch)
    grouped, _ = run(judge, monkeypatch, {"group_by_length": True}, images, prompts, batch_size=4)
    assert sorted(i for batch in seen for i in batch) == list(range(len(images)))
    assert any(batch != list(range(batch[0], batch[0] + len(batch))) for batch in seen)  # reordered
    assert all(batch == sorted(batch) for batch in seen)  # input order inside a batch
    # Batches come longest first and do not overlap in length.
    spans = [(min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in seen]
    assert all(low >= next_high for (low, _), (_, next_high) in zip(spans, spans[1:]))
    # Results line up with the inputs: each equals scoring that image alone.
    alone = [judge.batch_evaluate([images[i]], user_prompts=[prompts[i]])[0].score for i in (0, 5, 13)]
    assert [grouped[i].score for i in (0, 5, 13)] == alone


def test_estimated_lengths_match_the_real_token_counts(judge):
    images, prompts = varied(6)
    originals = [None] * len(images)
    estimated = judge._estimated_lengths(images, originals, [judge.system_prompt] * 6, prompts)
    real = []
    for image, prompt in zip(images, prompts):
        messages = [judge._build_messages(image, judge.system_prompt, prompt)]
        ids = judge.processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                  return_dict=True, return_tensors="pt")["input_ids"]
        real.append(ids.shape[1])
    assert estimated == real


def test_two_batches_or_fewer_keep_input_order(judge, monkeypatch):
    images, prompts = varied(8)
    seen = batches_seen(judge, monkeypatch)
    run(judge, monkeypatch, {"group_by_length": True}, images, prompts, batch_size=4)
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_prefetch_builds_the_next_batch_while_the_model_runs(judge, monkeypatch):
    images, prompts = varied(8)
    threads, next_batch_started = [], threading.Event()
    real_prepare, real_generate = judge._prepare_batch, judge.model.generate

    def prepare(indices, *args):
        threads.append(threading.current_thread().name)
        if len(threads) == 2:
            next_batch_started.set()
        return real_prepare(indices, *args)

    def generate(**kwargs):
        if not next_batch_started.is_set():  # the first batch: the second is being built meanwhile
            assert next_batch_started.wait(timeout=60)
        return real_generate(**kwargs)

    monkeypatch.setattr(judge, "_prepare_batch", prepare)
    monkeypatch.setattr(judge.model, "generate", generate)
    results, stats = run(judge, monkeypatch, {"prefetch": True}, images, prompts, batch_size=2)
    assert all(r.ok for r in results)
    assert len(threads) == 4 and all(name.startswith("judge-prefetch") for name in threads)
    assert stats.prepare_seconds > 0


def test_stop_early_decodes_while_the_next_batch_is_being_prepared(judge, monkeypatch):
    """The early-stop check reads answers at every decode step: it must not wait for the prefetch
    thread, which holds the processor (and its lock) for a whole batch's preparation. Here the next
    batch's preparation does not end until the current batch has decoded an answer; were the decode
    blocked by it, the preparation would give up waiting and end first."""
    from editjudge.models.reward.batching import _ScoreWritten

    images, prompts = varied(4)
    order, preparing, decoded = [], threading.Event(), threading.Event()
    real_template, real_check = judge.processor.apply_chat_template, _ScoreWritten.__call__
    prefetch_calls = []

    def slow_template(*args, **kwargs):  # on the prefetch thread, under whatever it holds there
        if kwargs.get("tokenize") and threading.current_thread().name.startswith("judge-prefetch"):
            prefetch_calls.append(1)
            if len(prefetch_calls) == 2:  # the second batch, built while the first is scored
                order.append("prepare starts")
                preparing.set()
                decoded.wait(timeout=30)
                order.append("prepare ends")
        return real_template(*args, **kwargs)

    class Spy:  # the check's tokenizer, recording its decodes
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def decode(self, *args, **kwargs):
            text = self.tokenizer.decode(*args, **kwargs)
            order.append("decode")
            decoded.set()
            return text

    def check(self, input_ids, scores, **kwargs):
        if not isinstance(self.tokenizer, Spy):
            preparing.wait(timeout=30)  # the first batch's decodes start once the next batch is being built
            self.tokenizer = Spy(self.tokenizer)
        return real_check(self, input_ids, scores, **kwargs)

    monkeypatch.setattr(judge.processor, "apply_chat_template", slow_template)
    monkeypatch.setattr(_ScoreWritten, "__call__", check)
    results, _ = run(judge, monkeypatch, {"prefetch": True, "stop_early": True, "group_by_length": False},
                     images, prompts, batch_size=2)
    assert all(r.ok for r in results) and len(prefetch_calls) == 2
    assert "decode" in order and order.index("prepare starts") < order.index("decode") < order.index("prepare ends")


def test_prefetch_auto_is_off_on_the_cpu(judge_path):
    """On the CPU the model uses every core; a preparing thread would only compete with it."""
    judge = Qwen3VLRewardModel(judge_path, device="cpu", show_progress=False)
    assert judge.prefetch is False
    assert Qwen3VLRewardModel(judge_path, device="cpu", prefetch=True, show_progress=False).prefetch is True


def test_error_while_prefetching_falls_back_for_that_batch(judge, monkeypatch):
    images, prompts = varied(8)
    expected, _ = run(judge, monkeypatch, OFF, images, prompts, batch_size=1)
    real = judge._prepare_inputs

    def fail_batches(requests):
        if len(requests) > 1 and requests[0].index == 4:
            raise ValueError("injected processor error")
        return real(requests)

    monkeypatch.setattr(judge, "_prepare_inputs", fail_batches)
    results, stats = run(judge, monkeypatch, {"prefetch": True, "group_by_length": False}, images, prompts,
                         batch_size=4)
    assert [r.score for r in results] == [r.score for r in expected]
    assert [r.fallback for r in results] == [False] * 4 + [True] * 4
    assert stats.batch_fallbacks == 1 and "injected processor error" in stats.fallback_causes[0]


def test_stop_early_cuts_generation_without_end_token(judge, monkeypatch):
    images, prompts = varied(6)
    expected, _ = run(judge, monkeypatch, OFF, images, prompts, batch_size=3)
    # Without an end-of-sequence token the judge would ramble on to max_new_tokens.
    monkeypatch.setattr(judge.model.generation_config, "eos_token_id", None)
    _, long_stats = run(judge, monkeypatch, OFF, images, prompts, batch_size=3)
    stopped, short_stats = run(judge, monkeypatch, {"stop_early": True}, images, prompts, batch_size=3)
    assert long_stats.decode_tokens == len(images) * (judge.max_new_tokens - 1)
    assert short_stats.decode_tokens < long_stats.decode_tokens * 0.6
    assert [r.score for r in stopped] == [r.score for r in expected]
    assert [r.raw_output for r in stopped] == [r.raw_output for r in expected]
    assert all(r.raw_output.rstrip().endswith("}") for r in stopped)  # cut right after the score


def test_auto_batch_size_estimates_then_halves_on_out_of_memory_and_remembers(judge_path, monkeypatch, caplog):
    import editjudge.models.reward.qwen3_vl as module

    judge = Qwen3VLRewardModel(judge_path, batch_size="auto", max_new_tokens=12, show_progress=False)
    images, prompts = varied(16)
    expected = judge.batch_evaluate(images, user_prompts=prompts, use_batch_inference=False)
    monkeypatch.setattr(module, "_free_memory_bytes", lambda device: 1 << 40)
    sizes, real = [], judge.model.generate

    def generate(**kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(**kwargs)

    monkeypatch.setattr(judge.model, "generate", generate)
    with caplog.at_level("INFO", logger=module.__name__):
        results = judge.batch_evaluate(images, user_prompts=prompts)
    assert [r.score for r in results] == [r.score for r in expected]
    assert sizes == [16, 8, 4, 4, 4, 4]  # all of it (plenty of memory), then halves, then what fits
    assert judge.stats.auto_batch_size == 4 and judge.stats.oom_splits >= 1
    assert "batch_size auto: 64" in caplog.text and "using 4 from now on" in caplog.text
    sizes.clear()
    judge.batch_evaluate(images, user_prompts=prompts)
    assert sizes == [4, 4, 4, 4]  # remembered: no more out-of-memory


def test_auto_batch_size_follows_free_memory(judge, monkeypatch):
    import editjudge.models.reward.qwen3_vl as module

    estimates = []
    for free in (1 << 20, 64 << 20, 1 << 40):
        monkeypatch.setattr(module, "_free_memory_bytes", lambda device, free=free: free)
        monkeypatch.setattr(judge, "_auto_batch_size", None)
        estimates.append(judge._estimate_batch_size(100))
    assert estimates[0] == 1 and estimates[0] <= estimates[1] <= estimates[2] == module.AUTO_MAX_BATCH
    assert all(size & (size - 1) == 0 for size in estimates)  # powers of two, so halving stays exact


def test_forward_clock_splits_prefill_from_decode(judge):
    images, prompts = varied(2)
    messages = [judge._build_messages(im, "s", p) for im, p in zip(images, prompts)]
    judge.processor.tokenizer.padding_side = "left"
    try:
        inputs = judge.processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                     return_dict=True, return_tensors="pt",
                                                     processor_kwargs={"padding": True})
    finally:
        judge.processor.tokenizer.padding_side = "right"
    stats = ScoringStats()
    with ForwardClock(judge.model, stats), torch.inference_mode():
        judge.model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    mask = inputs["attention_mask"]
    assert stats.prefill_tokens == int(mask.sum()) and stats.padding_tokens == int((mask == 0).sum())
    assert stats.decode_tokens == 2 * 4  # five tokens: one from the prefill, four generation steps
    assert stats.prefill_seconds > 0 and stats.decode_seconds > 0
    # generate encodes the images before its first forward call: that time is prefill too.
    assert 0 < stats.vision_seconds < stats.prefill_seconds
    judge.model(**inputs)  # outside the block: not counted
    assert stats.prefill_tokens == int(mask.sum())


def one_item_inputs(judge) -> dict:
    images, prompts = varied(1)
    messages = [judge._build_messages(im, "s", p) for im, p in zip(images, prompts)]
    return judge.processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                               return_dict=True, return_tensors="pt")


def test_forward_clock_times_nested_and_outside_encoder_calls_once(judge, monkeypatch):
    """The image encoder called by generate (outside the forward call) and by a plain forward
    call (inside it) is counted once either way, and the clock's total never exceeds wall time."""
    inputs = one_item_inputs(judge)
    visual = judge.model.model.visual
    slow = visual.forward

    def slowed(*args, **kwargs):  # the encoder takes at least 0.2 s
        time.sleep(0.2)
        return slow(*args, **kwargs)

    monkeypatch.setattr(visual, "forward", slowed)
    for call in (lambda: judge.model(**inputs),
                 lambda: judge.model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)):
        stats = ScoringStats()
        started = time.perf_counter()
        with ForwardClock(judge.model, stats), torch.inference_mode():
            call()
        wall = time.perf_counter() - started
        # The sleep is in there; counted twice, vision time would pass the prefill's, or the total the wall time.
        assert 0.2 <= stats.vision_seconds <= stats.prefill_seconds
        assert stats.prefill_seconds + stats.decode_seconds <= wall


def test_forward_clock_keeps_counting_after_a_call_that_raises(judge, monkeypatch):
    inputs = one_item_inputs(judge)
    visual = judge.model.model.visual
    real = visual.forward
    calls = []

    def out_of_memory_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(visual, "forward", out_of_memory_once)
    stats = ScoringStats()
    with ForwardClock(judge.model, stats), torch.inference_mode():
        with pytest.raises(torch.OutOfMemoryError):
            judge.model(**inputs)
        failed = stats.prefill_seconds
        judge.model(**inputs)
    assert len(calls) == 2 and stats.prefill_seconds > failed and stats.vision_seconds > 0


def test_batch_evaluate_reports_where_the_time_went(judge, monkeypatch):
    images, prompts = varied()
    _, stats = run(judge, monkeypatch, {}, images, prompts, batch_size=4)
    assert stats.items == len(images) and 0 < stats.forward_share < 1
    assert 0 <= stats.padding_fraction < 0.5 and stats.prefill_tokens > 0 and stats.decode_tokens > 0
    assert sum(items for items, _ in stats.batch_timings) == len(images)


@pytest.mark.parametrize(("params", "expected"), [
    ({"batch_size": "auto", "group_by_length": True, "prefetch": False, "stop_early": True, "quantization": None}, []),
    ({"prefetch": "auto"}, []),
    ({"batch_size": "big"}, ["batch_size must be 'auto' or a positive integer, got 'big'"]),
    ({"batch_size": 0}, ["batch_size must be 'auto' or a positive integer, got 0"]),
    ({"group_by_length": "yes"}, ["group_by_length must be true or false, got 'yes'"]),
    ({"prefetch": 1}, ["prefetch must be 'auto', true or false, got 1"]),
    ({"stop_early": None}, ["stop_early must be true or false, got None"]),
    ({"quantization": "int4"}, ["quantization must be null or one of ['int8'], got 'int4'"]),
    ({"dtype": "float8"}, ["dtype must be 'auto' or one of ['bfloat16', 'float16', 'float32'], got 'float8'"]),
    ({"attn_implementation": "paged"},
     ["attn_implementation must be one of ['sdpa', 'eager', 'flash_attention_2'], got 'paged'"]),
])
def test_config_problems_name_bad_values(judge_path, params, expected):
    assert Qwen3VLRewardModel.config_problems({"model_path": judge_path, **params}) == expected


def test_flash_attention_on_cpu_is_a_problem(judge_path):
    problems = Qwen3VLRewardModel.config_problems({"model_path": judge_path, "device": "cpu", "dtype": "float32",
                                                   "attn_implementation": "flash_attention_2"})
    assert any("runs on CUDA only" in p for p in problems)
    assert any("needs dtype bfloat16 or float16" in p for p in problems)
    with pytest.raises(ValueError, match="flash_attention_2"):
        Qwen3VLRewardModel(judge_path, device="cpu", attn_implementation="flash_attention_2")


def test_from_config_accepts_the_speed_options(judge_path):
    judge = Qwen3VLRewardModel.from_config({"model_path": judge_path, "batch_size": "auto", "group_by_length": False,
                                            "prefetch": False, "stop_early": False, "attn_implementation": "eager",
                                            "show_progress": False})
    assert (judge.batch_size, judge.group_by_length, judge.prefetch, judge.stop_early) == ("auto", False, False, False)
    assert judge.model.config._attn_implementation == "eager"
    assert all(r.ok for r in judge.batch_evaluate(varied(3)[0]))


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is not installed")
def test_int8_quantization_keeps_the_judge_useful(judge_path, graded_images):
    images, levels = graded_images
    plain = Qwen3VLRewardModel(judge_path, batch_size=8, score_mode="logits", show_progress=False)
    int8 = Qwen3VLRewardModel(judge_path, batch_size=8, score_mode="logits", quantization="int8", show_progress=False)
    quantized = [name for name, module in int8.model.named_modules()
                 if isinstance(module, torch.nn.Linear) and type(module.weight).__name__ != "Parameter"]
    assert quantized and not any(name.endswith("lm_head") for name in quantized)
    expected, scores = plain.batch_score(images), int8.batch_score(images)
    assert scores != expected  # it did change the arithmetic
    assert max(abs(a - b) for a, b in zip(scores, expected)) < 0.05
    assert not any(math.isnan(s) for s in scores)
