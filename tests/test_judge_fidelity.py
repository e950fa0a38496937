"""Scores a real judge would give: what the judge sees, how precisely it is read, what decides it.

Issue 12's judge-side points, on the tiny trained judge (CPU): the source image reaches every
prompt that asks for it (1), logits mode's float32 head (4), every setting either in the settings
hash or proven not to change a score or failure (5), greedy judging whatever the checkpoint's
generation_config says and the seeded ``sampling`` option (6), thinking checkpoints (7), and the
image-size bound with its visual-token log (9). Some tests force the judge's answer text with a
logits processor (``scripted``): the real processor, model, ``generate``, stopping and parsing
still run, only the tokens chosen are fixed, to reach answers the tiny judge never writes.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from editjudge.benchmark import load_benchmark
from editjudge.config import ConfigError, config_from_dict, load_config
from editjudge.models.reward import Qwen3VLRewardModel, ScoringStats
from editjudge.models.reward.parsing import ScoreParseError, answer_text, json_decided, parse_fields, parse_score
from editjudge.models.reward.results import ScoreResult
from editjudge.models.reward.rubrics import get_rubric, score_with_rubric
from editjudge.models.reward.thinking import LOGITS_WITH_THINKING
from editjudge.pipeline import scoring_settings_hash
from editjudge.tools.make_tiny_models import synthetic_image
from tests.conftest import ROOT, SAMPLE

QWEN_LOGGER = "editjudge.models.reward"  # the judge module and its parts (answers.py)
# Qwen3-VL's thinking generation prompt: the answer starts inside an open <think> block.
THINKING_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' or 'image' in item %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in item %}{{- item['text'] }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)


def copy_judge(src: str, dest: Path, generation: dict | None = None, template: str | None = None) -> str:
    """A copy of the tiny judge with another generation_config or chat template."""
    shutil.copytree(src, dest)
    if generation is not None:
        config = json.loads((dest / "generation_config.json").read_text())
        (dest / "generation_config.json").write_text(json.dumps({**config, **generation}))
    if template is not None:
        (dest / "chat_template.jinja").write_text(template)
    return str(dest)


def outcome(results: list[ScoreResult]) -> list:
    """What a run decides per item: its score, or that it failed and why (the answer it quotes aside)."""
    return [r.score if r.ok else ("failed", r.error.split(" in answer ")[0]) for r in results]


def images(n: int, seed: int = 5) -> list[Image.Image]:
    rng = random.Random(seed)
    return [synthetic_image(rng) for _ in range(n)]


def scripted(monkeypatch, judge, answers: list[str]) -> None:
    """Make the judge's ``generate`` write ``answers[row]`` (then its end token) for each row of a batch."""
    from transformers import LogitsProcessorList

    tokenizer = judge.processor.tokenizer
    scripts = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    eos = judge.model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    real = judge.model.generate

    def generate(**kwargs):
        start = kwargs["input_ids"].shape[1]

        def force(input_ids, scores):
            step = input_ids.shape[1] - start
            forced = torch.full_like(scores, -math.inf)
            for row, script in enumerate(scripts[:scores.shape[0]]):
                forced[row, script[step] if step < len(script) else eos] = 0.0
            return forced

        extra = list(kwargs.pop("logits_processor", None) or [])
        return real(**kwargs, logits_processor=LogitsProcessorList(extra + [force]))

    monkeypatch.setattr(judge.model, "generate", generate)


# ------------------------------------------------------------------ 1. the source image


class ImagesSeen:
    """Wraps the processor's ``__call__``: the (height, width) patch grid of each image, per conversation."""

    def __init__(self, monkeypatch, judge):
        self.conversations: list[list[tuple[int, int]]] = []
        cls = type(judge.processor)
        real = cls.__call__
        start = judge.model.config.vision_start_token_id

        def spy(processor, *args, **kwargs):
            out = real(processor, *args, **kwargs)
            grids = out["image_grid_thw"].tolist() if "image_grid_thw" in out else []
            position = 0
            for row in out["input_ids"]:
                count = int((row == start).sum())
                self.conversations.append([(h, w) for _, h, w in grids[position:position + count]])
                position += count
            return out

        monkeypatch.setattr(cls, "__call__", spy)


def test_each_prompt_gets_the_images_it_asks_for_in_order(judge, monkeypatch):
    sources = [Image.new("RGB", (96, 64), (210, 210, 210)) for _ in range(3)]  # 6x4 patches of 16 px
    edits = [Image.new("RGB", (64, 96), (40, 40, 40)) for _ in range(3)]  # 4x6
    source_grid, edited_grid = (4, 6), (6, 4)
    seen = ImagesSeen(monkeypatch, judge)

    judge.batch_evaluate(edits, instructions=["make it red"] * 3)  # the plain prompt: the edit alone
    assert seen.conversations == [[edited_grid]] * 3
    seen.conversations.clear()
    judge.batch_evaluate(edits, instructions=["make it red"] * 3, original_images=sources)  # compare_with_original
    assert seen.conversations == [[source_grid, edited_grid]] * 3
    seen.conversations.clear()

    # viescore: the semantics prompt ("first the original, then ...") sees both, the quality prompt the edit.
    rubric = get_rubric("viescore")
    assert "first the original, then" in rubric.prompts[0].user_prompt
    score_with_rubric(judge, rubric, edits, ["make it red"] * 3, sources)
    assert seen.conversations == [[source_grid, edited_grid]] * 3 + [[edited_grid]] * 3


def test_the_pipeline_shows_viescore_the_source(tmp_path, judge_path, precomputed_dir):
    """``python main.py`` with the shipped config (tiny judge, one precomputed editor) and rubric viescore."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["benchmark"] = {"path": str(SAMPLE), "limit": 4}
    data["editing"] = {"devices": ["cpu"], "editors": [{"name": "bright", "type": "precomputed",
                                                         "image_dir": str(precomputed_dir)}]}
    data["reward_model"]["devices"] = ["cpu"]
    data["reward_model"]["params"].update(model_path=judge_path, dtype="float32", rubric="viescore",
                                          max_new_tokens=24, show_progress=False)
    data["output_dir"] = str(tmp_path / "out")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "main.py", "--config", str(config), "--log-level", "DEBUG"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "OMP_NUM_THREADS": "1"})
    # The tiny judge may answer no viescore prompt in a readable way: a run where every pair failed exits 1.
    assert result.returncode == 0 or (result.returncode == 1 and "every one of the 4 pairs failed"
                                      in result.stderr), result.stderr[-3000:]
    lines = re.findall(r"judge input for item \d+: (\d) image\(s\): (.*)", result.stderr)
    scored = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    pairs = [r for r in scored if r["failed_stage"] in (None, "score")]
    assert len(pairs) >= 3
    two = [desc for count, desc in lines if count == "2"]
    one = [desc for count, desc in lines if count == "1"]
    assert len(two) == len(pairs) and len(one) == len(pairs) and len(lines) == 2 * len(pairs)
    assert all(desc.startswith("source ") and ", edited " in desc for desc in two)
    assert all(desc.startswith("edited ") for desc in one)
    # The first image is the item's source, at the size the processor resizes it to.
    items = {i.id: i for i in load_benchmark(SAMPLE)}
    expected = set()
    for record in pairs:
        width, height = Image.open(items[record["item_id"]].image).size
        h, w = smart_resize(height, width, factor=32, min_pixels=1024, max_pixels=1048576)
        expected.add(f"source {w}x{h} px")
    assert {desc.split(" -> ")[0] for desc in two} == expected
    assert all("editing_success" in r["sub_scores"] for r in pairs)


# ------------------------------------------------------------------ 4. float32 logits


def biased_head(head: torch.nn.Linear, offset: float) -> torch.nn.Linear:
    """The head, untied, with every logit raised by ``offset``: an 8B model's magnitudes, same softmax."""
    out = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(head.weight)
        out.bias.fill_(offset)
    return out


def expected_from_logits(logits: torch.Tensor, digits: list[int]) -> list[float]:
    """Score 0-10 from the last two positions' logits: softmax in float32, "10" as "1" then "0"."""
    first = torch.softmax(logits[:, 0].float(), dim=-1)[:, digits]
    zero_after_one = torch.softmax(logits[:, 1].float(), dim=-1)[:, digits[0]]
    scores = []
    for row in range(logits.shape[0]):
        weights = {d: float(first[row, d]) for d in range(10) if d != 1}
        weights[1] = float(first[row, 1]) * (1 - float(zero_after_one[row]))
        weights[10] = float(first[row, 1]) * float(zero_after_one[row])
        scores.append(sum(v * w for v, w in weights.items()) / sum(weights.values()))
    return scores


def test_logits_mode_reads_float32_logits_from_bfloat16_hidden_states(judge_path):
    judge = Qwen3VLRewardModel(judge_path, dtype="bfloat16", device="cpu", score_mode="logits", batch_size=4,
                               group_by_length=False, show_progress=False)
    assert judge.model.dtype == torch.bfloat16
    judge.model.lm_head = biased_head(judge.model.lm_head, 24.0)  # top logits near 36, bf16 steps of 0.25
    hidden = []
    judge.model.lm_head.register_forward_pre_hook(lambda module, args: hidden.append(args[0].detach()))
    rng = random.Random(2)
    pictures = [synthetic_image(rng, level=level) for level in range(11)]
    scores = [r.score for r in judge.batch_evaluate(pictures)]
    states = torch.cat(hidden)
    assert states.dtype == torch.bfloat16 and states.shape[:2] == (11, 2)
    head = judge.model.lm_head
    with torch.no_grad():
        float32 = torch.nn.functional.linear(states.float(), head.weight.float(), head.bias.float())
        bfloat16 = head(states)  # the old path: the bf16 head's logits, rounded to bf16
    assert bfloat16.dtype == torch.bfloat16 and float(bfloat16.float().abs().max()) > 30
    reference = expected_from_logits(float32, judge._digit_ids)
    old = expected_from_logits(bfloat16, judge._digit_ids)
    assert scores == pytest.approx(reference, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(old, reference)) > 5e-3  # what bf16 logits cost at these magnitudes


# ------------------------------------------------------------------ 5. the settings hash


def settings_hash(params: dict) -> str:
    return scoring_settings_hash(config_from_dict({
        "benchmark": {"path": str(SAMPLE)},
        "editing": {"editors": [{"name": "a", "type": "precomputed", "image_dir": "x"}]},
        "reward_model": {"type": "qwen3_vl", "params": {"model_path": "Qwen/Qwen3-VL-8B-Instruct", **params}},
        "output_dir": "out",
    }))


# A changed value for every param that can change a score or a failure.
HASHED = {
    "model_path": "Qwen/Qwen3-VL-8B-Thinking", "dtype": "bfloat16", "attn_implementation": "eager",
    "max_new_tokens": 256, "min_pixels": 4096, "max_pixels": 262144, "system_prompt": "You judge.",
    "user_prompt": "Rate {instruction}.", "compare_with_original": True, "score_mode": "logits",
    "score_range": [1, 5], "logits_prefix": '{"rating": ', "trust_remote_code": True, "quantization": "int8",
    "sampling": {"temperature": 1.0, "num_samples": 4}, "rubric": "viescore",
    "adapter_path": "EditScore/EditScore-7B-LoRA", "merge_adapter": True,  # merging rounds the weights anew
    "text_before_images": True,  # the prompt before the images: another conversation (hashed only when true)
}
# The params kept out of the hash, each with the test below that proves it changes no score or failure.
PROVEN_NEUTRAL = {
    "batch_size": "test_speed_settings_change_no_score_or_failure",
    "use_batch_inference": "test_speed_settings_change_no_score_or_failure",
    "group_by_length": "test_speed_settings_change_no_score_or_failure",
    "prefetch": "test_speed_settings_change_no_score_or_failure",
    "show_progress": "test_speed_settings_change_no_score_or_failure",
    "stop_early": "test_stop_early_never_changes_a_score_or_failure",
    # Set per worker from reward_model.devices (not a score setting): a float32 score on the CPU and a
    # GPU's can differ in the last bits, as any two kernels do; dtype 'auto' is hashed as written.
    "device": "test_speed_settings_change_no_score_or_failure",
    # Where a replica's weights go across a device group; same scores (tests/test_gpu_path.py).
    "max_memory": "test_a_group_load_through_device_map_scores_like_today",
}


def test_every_judge_setting_is_hashed_or_proven_not_to_change_outputs():
    accepted = set(inspect.signature(Qwen3VLRewardModel.__init__).parameters) - {"self"} | {"rubric"}
    assert accepted == set(HASHED) | set(PROVEN_NEUTRAL), "classify the new setting here"
    assert set(PROVEN_NEUTRAL) == Qwen3VLRewardModel.speed_params  # declared by the backend itself
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert all(f"def {name}(" in tests for name in PROVEN_NEUTRAL.values())
    base = settings_hash({})
    for key, value in HASHED.items():
        assert settings_hash({key: value}) != base, key
    for key in PROVEN_NEUTRAL:
        assert settings_hash({key: {"batch_size": 2, "device": "cpu", "max_memory": "10GiB"}.get(key, False)}) == base, key


def run_with(judge, monkeypatch, settings: dict, inputs, **call) -> list[ScoreResult]:
    with monkeypatch.context() as m:
        for key, value in settings.items():
            m.setattr(judge, key, value)
        m.setattr(judge, "stats", ScoringStats())
        return judge.batch_evaluate(*inputs, **call)


def test_speed_settings_change_no_score_or_failure(judge, judge_path, monkeypatch, tmp_path):
    pictures = images(9) + [str(tmp_path / "missing.png")]  # an image that cannot be opened fails alone
    prompts = ['Rate "{instruction}" from 0 to 10 as {"score": N}.', "Score 0-10."] * 5
    inputs = (pictures, None, prompts)
    plain = {"group_by_length": False, "prefetch": False, "stop_early": False, "show_progress": False}
    expected = run_with(judge, monkeypatch, plain, inputs, batch_size=1, instructions=["make it red"] * 10)
    assert sum(r.ok for r in expected) == 9 and "missing.png" in expected[-1].error
    variants = [({}, {"batch_size": 3}), ({}, {"batch_size": 10}), ({}, {"use_batch_inference": False}),
                ({"group_by_length": True}, {"batch_size": 2}), ({"prefetch": True}, {"batch_size": 3}),
                ({"stop_early": True}, {"batch_size": 4}), ({"show_progress": True}, {"batch_size": 4}),
                ({"group_by_length": True, "prefetch": True, "stop_early": True}, {"batch_size": 2})]
    for settings, call in variants:
        results = run_with(judge, monkeypatch, {**plain, **settings}, inputs, instructions=["make it red"] * 10, **call)
        assert outcome(results) == outcome(expected), (settings, call)
    other_device = Qwen3VLRewardModel(judge_path, device="cpu:0", max_new_tokens=judge.max_new_tokens,
                                      show_progress=False).batch_evaluate(*inputs, instructions=["make it red"] * 10)
    assert outcome(other_device) == outcome(expected)


ANSWERS = [
    '{"score": 7} Hmm, on reflection {"score": 3}',  # a second, conflicting object after the answer
    '{"score": 70} then {"score": 3}',  # the first object is out of range: a failure either way
    'I see {"quality": 5} and so {"score": 4}.',  # the first object with a score decides
    'Score: 6, in JSON {"score": 2} and Final score: 9',  # JSON before any labelled line
    "No number here at all, sorry.",
]


def test_stop_early_never_changes_a_score_or_failure(judge, monkeypatch):
    pictures = images(len(ANSWERS))
    scripted(monkeypatch, judge, ANSWERS)
    long = run_with(judge, monkeypatch, {"stop_early": False, "max_new_tokens": 40}, (pictures,), batch_size=5)
    short = run_with(judge, monkeypatch, {"stop_early": True, "max_new_tokens": 40}, (pictures,), batch_size=5)
    assert [r.raw_output for r in long] == ANSWERS
    assert outcome(short) == outcome(long)
    assert [r.score if r.ok else None for r in long] == [7.0, None, 4.0, 2.0, None]
    assert short[0].raw_output == '{"score": 7}'  # only the text after the decided answer is dropped


@pytest.mark.parametrize("text", ANSWERS + [
    '{"editing_success": 8, "over_editing": 2} then {"editing_success": 5, "over_editing": 9}',
    '{"editing_success": 8} {"over_editing": 2} {"editing_success": 3, "over_editing": 4}',
    '<think>first {"score": 1}</think>{"score": 5} {"score": 6}',
])
def test_a_decided_prefix_parses_like_the_whole_answer(text):
    def result(parse, s):
        try:
            return parse(s)
        except ScoreParseError as exc:
            return ("failed", str(exc).split(" in answer")[0])

    parsers = [(lambda s: parse_score(answer_text(s)), ("score",)),
               (lambda s: parse_fields(answer_text(s), ["editing_success", "over_editing"]),
                ("editing_success", "over_editing"))]
    def decided(prefix: str, fields) -> bool:  # where the judge's stop_early ends an answer
        if "<think>" in prefix or "</think>" in prefix:
            if "</think>" not in prefix:
                return False
            prefix = prefix.partition("</think>")[2]
        return json_decided(prefix, fields)

    for parse, fields in parsers:
        for k in range(len(text) + 1):
            if decided(text[:k], fields):
                assert result(parse, text[:k]) == result(parse, text), (text[:k], fields)


# ------------------------------------------------------------------ 6. greedy and sampling


@pytest.fixture(scope="module")
def sampling_checkpoint(judge_path, tmp_path_factory) -> str:
    """The tiny judge whose generation_config samples like Qwen3-VL-8B-Instruct's, with a repetition
    penalty as other checkpoints ship (Qwen2.5-VL's is 1.05; larger here, to matter to a tiny model)."""
    return copy_judge(judge_path, tmp_path_factory.mktemp("sampling") / "judge", generation={
        "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.3})


def test_judging_is_greedy_whatever_the_checkpoint_samples(judge, sampling_checkpoint, graded_images, caplog):
    pictures, _ = graded_images
    with caplog.at_level(logging.INFO, logger=QWEN_LOGGER):
        sampler = Qwen3VLRewardModel(sampling_checkpoint, max_new_tokens=judge.max_new_tokens, show_progress=False)
    assert "judging greedily" in caplog.text and "temperature=0.7" in caplog.text and "top_k=20" in caplog.text
    greedy = judge.batch_evaluate(pictures)
    first, second = sampler.batch_evaluate(pictures), sampler.batch_evaluate(pictures)
    assert all(r.ok for r in greedy)
    assert [r.raw_output for r in first] == [r.raw_output for r in second] == [r.raw_output for r in greedy]
    assert outcome(first) == outcome(greedy)


SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 1, "num_samples": 3}


def test_sampling_is_seeded_per_item_and_scores_the_mean(judge_path, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger=QWEN_LOGGER):
        sampler = Qwen3VLRewardModel(judge_path, max_new_tokens=12, sampling=SAMPLING, show_progress=False)
    assert "judging by sampling: temperature=1, top_p=1, top_k=0, seed=1, 3 sample(s)" in caplog.text
    pictures = images(8, seed=9)
    runs = [sampler.batch_evaluate(pictures, batch_size=4), sampler.batch_evaluate(pictures, batch_size=4),
            sampler.batch_evaluate(pictures[::-1], batch_size=3)[::-1],
            sampler.batch_evaluate(pictures, use_batch_inference=False)]
    raw = [r.raw_output for r in runs[0]]
    for run in runs[1:]:  # the same samples whatever the batch, the order or batching at all
        assert [r.raw_output for r in run] == raw
    scored = [r for r in runs[0] if r.ok]
    assert len(scored) >= 4
    for result in scored:
        values = [s.score for s in result.samples]
        assert len(values) == 3 and result.score == pytest.approx(sum(values) / 3)
        assert result.spread == pytest.approx(math.sqrt(sum((v - result.score) ** 2 for v in values) / 3))
        assert "[samples] scores" in result.raw_output
    assert any(r.spread > 0 for r in scored)  # the samples really differ
    for result in runs[0]:
        if not result.ok:
            assert re.match(r"sample \d of 3: ", result.error)
    with monkeypatch.context() as m:
        m.setattr(sampler, "sampling", type(sampler.sampling)(**{**SAMPLING, "seed": 2}))
        reseeded = sampler.batch_evaluate(pictures, batch_size=4)
    assert [r.raw_output for r in reseeded] != raw


def test_samples_share_one_vision_pass_and_one_prefill_call(judge_path):
    """num_samples=3: the vision tower encodes each image once (not once per sample), in one call per
    batch, and the language model's prefill is one call; the samples still differ and are seeded."""
    sampler = Qwen3VLRewardModel(judge_path, max_new_tokens=12, sampling=SAMPLING, show_progress=False)
    visual = sampler.model.model.visual
    encoded, prefills = [], []
    handles = [visual.register_forward_hook(lambda m, args, kwargs, out: encoded.append(len(kwargs.get(
                   "grid_thw", args[1] if len(args) > 1 else None))), with_kwargs=True),
               sampler.model.model.language_model.register_forward_hook(
                   lambda m, args, kwargs, out: prefills.append(1) if out.last_hidden_state.shape[1] > 1 else None,
                   with_kwargs=True)]
    pictures = images(4, seed=9)
    try:
        results = sampler.batch_evaluate(pictures, batch_size=4)
    finally:
        for handle in handles:
            handle.remove()
    assert encoded == [4]  # one call, one encoding per image: not [4, 4, 4]
    assert prefills == [1]
    assert all(len(r.samples) == 3 for r in results) and any(r.spread for r in results if r.ok)


def test_sampling_in_a_rubric_combines_each_sample_then_averages_as_editscore():
    """EditScore's self-ensembling: each sample's overall score (sample k of every prompt combined),
    then their mean; a mean of minima, not the minimum of the fields' means."""
    class SampledJudge:
        score_range, system_prompt = (0.0, 10.0), "system"

        def batch_evaluate(self, edited, system_prompts=None, user_prompts=None, original_images=None, parse=None):
            name = "semantics" if "two pictures" in user_prompts[0] else "quality"
            texts = {"semantics": ['{"editing_success": 10, "over_editing": 2}',
                                   '{"editing_success": 2, "over_editing": 10}'],
                     "quality": ['{"naturalness": 9, "artifacts": 5}', '{"naturalness": 5, "artifacts": 9}']}[name]
            samples = [ScoreResult(score=parse(t), raw_output=t, answer=t) for t in texts]
            return [ScoreResult(score=sum(s.score for s in samples) / 2, raw_output="both", samples=samples)]

    result, = score_with_rubric(SampledJudge(), get_rubric("viescore"), ["e"], ["make it red"], ["s"])
    per_sample = [math.sqrt(min(10, 2) * min(9, 5)), math.sqrt(min(2, 10) * min(5, 9))]  # sqrt(SC * PQ) each
    assert result.score == pytest.approx(sum(per_sample) / 2) == pytest.approx(math.sqrt(10))
    assert result.score < math.sqrt(min(6, 6) * min(7, 7)) - 3  # the combine of the means: sqrt(42)
    assert result.sub_scores["editing_success"] == 6 and result.sub_scores["over_editing"] == 6  # field means
    assert result.sub_scores["naturalness"] == 7 and result.sub_scores["artifacts"] == 7
    assert result.sub_scores["SC"] == 2 and result.sub_scores["PQ"] == 5  # means of the samples' SC and PQ
    assert result.sub_scores["overall"] == result.score


@pytest.mark.parametrize("sampling, message", [
    ({"temperature": 0}, "sampling.temperature must be a number above 0"),
    ({"top_p": 1.5}, "sampling.top_p must be a number in (0, 1]"),
    ({"num_samples": 0}, "sampling.num_samples must be a positive integer"),
    ({"beams": 2}, "sampling: unknown keys ['beams']"),
    ("yes", "sampling must be null (greedy) or a mapping"),
])
def test_bad_sampling_settings_are_named(judge_path, sampling, message):
    problems = Qwen3VLRewardModel.config_problems({"model_path": judge_path, "sampling": sampling})
    assert any(message in p for p in problems), problems


def test_sampling_with_logits_mode_is_a_configuration_error(judge_path):
    problems = Qwen3VLRewardModel.config_problems({"model_path": judge_path, "score_mode": "logits",
                                                   "sampling": {"num_samples": 2}})
    assert any("sampling applies to score_mode 'generate'" in p for p in problems)


# ------------------------------------------------------------------ 7. thinking checkpoints


@pytest.fixture(scope="module")
def thinking_path(judge_path, tmp_path_factory) -> str:
    return copy_judge(judge_path, tmp_path_factory.mktemp("thinking") / "judge", template=THINKING_TEMPLATE)


def test_thinking_answers_are_read_after_think(thinking_path, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger=QWEN_LOGGER):
        judge = Qwen3VLRewardModel(thinking_path, max_new_tokens=80, show_progress=False)
    assert judge.thinking and "max_new_tokens=80" in caplog.text  # warned: too small for real reasoning
    answers = ['The sky is dim, at first {"score": 2} came to mind.\n</think>\n\n{"score": 8}',
               "Brightness is about half.</think>\nFinal score: 5",
               'It could be {"score": 3}, I am unsure.']  # stopped by its end token, still thinking
    scripted(monkeypatch, judge, answers)
    results = judge.batch_evaluate(images(3))
    assert [r.score for r in results[:2]] == [8.0, 5.0]  # never the 2 written while thinking
    assert results[0].answer == '\n\n{"score": 8}'
    assert not results[2].ok and "never closed its <think> block" in results[2].error


def test_a_thinking_answer_cut_by_max_new_tokens_is_a_clear_error(thinking_path, monkeypatch):
    judge = Qwen3VLRewardModel(thinking_path, max_new_tokens=10, show_progress=False)
    scripted(monkeypatch, judge, ['Let me look closely at every part of the picture. </think>{"score": 6}'] * 2)
    results = judge.batch_evaluate(images(2))
    for result in results:
        assert not result.ok
        assert "still thinking when max_new_tokens=10 ran out" in result.error
        assert "raise max_new_tokens" in result.error


def test_the_tiny_judge_under_a_thinking_template_never_gets_a_score_from_its_reasoning(thinking_path):
    judge = Qwen3VLRewardModel(thinking_path, max_new_tokens=16, show_progress=False)
    results = judge.batch_evaluate(images(3))
    # It answers {"score": N} inside the open block and stops: an unfinished thought, not a score.
    assert all(not r.ok and "<think>" in r.error for r in results), [(r.raw_output, r.error) for r in results]


def test_logits_mode_with_a_thinking_template_is_a_configuration_error(thinking_path, tmp_path):
    params = {"model_path": thinking_path, "score_mode": "logits"}
    assert LOGITS_WITH_THINKING in Qwen3VLRewardModel.config_problems(params)
    assert LOGITS_WITH_THINKING in Qwen3VLRewardModel.config_problems(
        {"model_path": "Qwen/Qwen3-VL-8B-Thinking", "score_mode": "logits"})  # not on disk: by its name
    assert Qwen3VLRewardModel.config_problems({"model_path": thinking_path, "score_mode": "generate"}) == []
    with pytest.raises(ValueError, match="thinking chat template"):
        Qwen3VLRewardModel(thinking_path, score_mode="logits", show_progress=False)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "benchmark": {"path": str(SAMPLE)},
        "editing": {"editors": [{"name": "a", "type": "precomputed", "image_dir": str(tmp_path)}]},
        "reward_model": {"type": "qwen3_vl", "params": params}, "output_dir": str(tmp_path / "out")}))
    with pytest.raises(ConfigError, match="thinking chat template"):
        load_config(config)
    from editjudge.cli import main

    assert main(["--config", str(config)]) == 2
    assert not (tmp_path / "out").exists()  # stopped before any work


# ------------------------------------------------------------------ 9. image size


@pytest.mark.parametrize("name", ["config.yaml", "config_multi_gpu.yaml"])
def test_shipped_configs_bound_the_judged_image_size(name, judge_path):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    params = yaml.safe_load((ROOT / name).read_text())["reward_model"]["params"]
    assert params["max_pixels"] == 1024 * 1024
    judge = Qwen3VLRewardModel.from_config({**params, "model_path": judge_path, "dtype": "float32", "device": "cpu",
                                            "show_progress": False})
    size = judge.processor.image_processor.size
    assert size["longest_edge"] == 1024 * 1024
    h, w = smart_resize(2048, 2048, factor=32, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
    assert (h // 32) * (w // 32) == 1024  # a 2048x2048 edit: 1024 visual tokens, not 4096


def test_visual_tokens_are_logged_per_image_at_debug_level(judge, judge_path, caplog):
    picture = Image.new("RGB", (96, 96), (128, 128, 128))  # under the tiny processor's own bound (16384)
    bounded = Qwen3VLRewardModel(judge_path, max_pixels=64 * 64, max_new_tokens=12, show_progress=False)
    # Both module loggers: the bench, run in-process by another test, quiets qwen3_vl's own.
    with caplog.at_level(logging.DEBUG, logger=QWEN_LOGGER), \
            caplog.at_level(logging.DEBUG, logger=f"{QWEN_LOGGER}.qwen3_vl"):
        bounded.batch_evaluate([picture])
        judge.batch_evaluate([picture], original_images=[Image.new("RGB", (64, 32))])
    lines = [r.getMessage() for r in caplog.records if "judge input" in r.getMessage()]
    assert lines == ["judge input for item 0: 1 image(s): edited 64x64 px -> 4 visual tokens",
                     "judge input for item 0: 2 image(s): source 64x32 px -> 2 visual tokens, "
                     "edited 96x96 px -> 9 visual tokens"]
