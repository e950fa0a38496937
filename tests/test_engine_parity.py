"""Engine parity: the transformers judge and the vLLM judge read the same prompt, token for token.

For each shipped rubric (``simple``, ``viescore`` and the official VIEScore prompts read from a
local GEdit-Bench-shaped folder: a two-image prompt and an empty system prompt) and both tiny judges
(Qwen3-VL and Qwen2.5-VL), the ``input_ids`` the transformers judge's model receives (captured at
``generate``, not re-rendered here) equal the prompt token ids the vLLM server reports for the same
request (``return_token_ids``), and the rubric results (score, sub-scores, raw answers, errors) are
equal. One vLLM server per judge for the module. Skips where vLLM is not installed unless
EDITJUDGE_REQUIRE_VLLM=1 (see tests/vllm_server.py).
"""

from __future__ import annotations

import os

import pytest

from editjudge.benchmark import load_benchmark
from editjudge.models.reward.rubrics import get_rubric, score_with_rubric
from editjudge.models.reward.viescore_files import official_rubric
from tests.conftest import CACHE, MISSING, SAMPLE
from tests.test_first_hour import fake_viescore
from tests.vllm_server import SERVER_ENV, vllm_python

MAX_PIXELS = 4096  # below the tiny judges' default: every image is resized smaller


def _judge_path(name: str, tiny_models) -> str:
    if name == "qwen3-vl":
        return str(tiny_models["judge"])
    from editjudge.tools.make_tiny_qwen25 import ensure_tiny_qwen25

    return str(ensure_tiny_qwen25(CACHE))


@pytest.fixture(scope="module", params=["qwen3-vl", "qwen2.5-vl"])
def engines(request, tiny_models, tmp_path_factory):
    """(transformers judge, vLLM judge) on one tiny checkpoint; the server is stopped by its PID at the end."""
    from editjudge.models.reward.vllm_judge import VLLMRewardModel

    python = vllm_python()
    path = _judge_path(request.param, tiny_models)
    saved = {k: os.environ.get(k) for k in SERVER_ENV}
    os.environ.update(SERVER_ENV)
    try:
        served = VLLMRewardModel(path, python=python, output_dir=str(tmp_path_factory.mktemp("vllm")),
                                 max_new_tokens=16, max_model_len=2048, ready_timeout=900, cache_dir=False,
                                 max_concurrent=1, extra_body={"return_token_ids": True})
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    local = _local(path)
    try:
        yield local, served
    finally:
        served.close()
        assert served.server.process.poll() is not None


def _local(path: str, **params):
    from editjudge.models.reward import Qwen3VLRewardModel

    return Qwen3VLRewardModel(path, device="cpu", dtype="float32", batch_size=1, max_new_tokens=16,
                              show_progress=False, group_by_length=False, prefetch=False, **params)


def _openai(vllm, monkeypatch, **params):
    """A ``type: openai`` judge of the vLLM judge's server."""
    from editjudge.models.reward.openai_judge import OpenAIRewardModel

    monkeypatch.setenv("EDITJUDGE_PARITY_KEY", vllm.server.api_key)
    return OpenAIRewardModel(vllm.model_path, base_url=vllm.server.base_url, api_key_env="EDITJUDGE_PARITY_KEY",
                             max_new_tokens=vllm.max_new_tokens, cache_dir=False, max_concurrent=1,
                             extra_body={"return_token_ids": True}, **params)


def _items(precomputed_dir, tmp_path) -> tuple[list, list]:
    """Two items and their edits: one 206x100 (an aspect where Qwen2.5-VL's 28-pixel grid and Qwen3-VL's
    32-pixel one round differently), one 40x30 (each engine resizes each image on its own)."""
    from PIL import Image

    items = [item for item in load_benchmark(SAMPLE) if item.id != MISSING][:2]
    edits = [tmp_path / "wide.png", precomputed_dir / f"{items[1].id}.png"]
    Image.open(precomputed_dir / f"{items[0].id}.png").resize((206, 100)).save(edits[0])
    return items, edits


def _rubric(name: str, tmp_path):
    if name == "official":
        return get_rubric(official_rubric(fake_viescore(tmp_path / "GEdit-Bench" / "viescore")))
    return get_rubric(name)


def _received(local, served, monkeypatch) -> tuple[list, list]:
    """Lists that fill with each prompt the transformers model received and the vLLM server tokenized."""
    local_ids = []
    generate = local.model.generate

    def recording_generate(*args, **kwargs):
        for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
            local_ids.append(ids[mask.bool()].tolist())  # without the left padding
        return generate(*args, **kwargs)

    monkeypatch.setattr(local.model, "generate", recording_generate)
    return local_ids, _served_ids(served, monkeypatch)


def _served_ids(served, monkeypatch) -> list:
    """A list that fills with the prompt token ids the vLLM server reports for each request."""
    served_ids = []
    post = served.client.post

    def recording_post(path, body):
        response = post(path, body)
        served_ids.append(response["prompt_token_ids"])
        return response

    monkeypatch.setattr(served.client, "post", recording_post)
    return served_ids


@pytest.mark.parametrize("rubric_name, max_pixels", [("simple", None), ("viescore", None), ("official", None),
                                                      ("official", MAX_PIXELS)])
def test_both_engines_see_the_same_token_ids_and_give_the_same_results(rubric_name, max_pixels, engines,
                                                                       precomputed_dir, tmp_path, monkeypatch):
    local, served = engines
    if max_pixels is not None:  # type: openai resizes before sending, to what the transformers judge's processor does
        local = _local(served.model_path, max_pixels=max_pixels)
        factor = 28 if local.model.config.model_type == "qwen2_5_vl" else 32  # patch size x merge size
        served = _openai(served, monkeypatch, max_pixels=max_pixels, resize_factor=factor)
    rubric = _rubric(rubric_name, tmp_path)
    items, edits = _items(precomputed_dir, tmp_path)
    sources = [item.image for item in items]
    instructions = [item.instruction for item in items]
    local_ids, served_ids = _received(local, served, monkeypatch)
    expected = score_with_rubric(local, rubric, edits, instructions, sources)
    results = score_with_rubric(served, rubric, edits, instructions, sources)

    requests = len(items) * len(rubric.prompts)
    assert len(local_ids) == len(served_ids) == requests, [r.error for r in results]
    tokenizer = local.processor.tokenizer
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    vision_start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    for prompt_index, prompt in enumerate(rubric.prompts):
        for item_index in range(len(items)):
            k = prompt_index * len(items) + item_index
            mine, theirs = local_ids[k], served_ids[k]
            assert mine.count(vision_start) == (2 if prompt.with_source else 1)
            assert image_pad in mine
            if max_pixels is not None:
                assert mine.count(image_pad) <= (2 if prompt.with_source else 1) * max_pixels // 28 ** 2
            assert mine == theirs, (f"{rubric_name}/{prompt.name} item {item_index}: transformers got "
                                    f"{len(mine)} tokens, vLLM {len(theirs)}:\n{tokenizer.decode(mine)!r}\n"
                                    f"{tokenizer.decode(theirs)!r}")
            # The official prompts' empty system prompt: no system turn (both tiny templates add none).
            assert tokenizer.decode(mine).count("<|im_start|>system") == (1 if prompt.system_prompt else 0)
    assert [vars(r) for r in results] == [vars(r) for r in expected]


def test_logits_mode_prefills_the_same_tokens_on_both_engines(engines, precomputed_dir, tmp_path, monkeypatch):
    """``score_mode: logits``: vLLM continues the prefilled ``{"score": `` (then ``{"score": 1`` for the
    10) where the transformers judge appends the digit's token: the same ids, and scores within 1e-3."""
    path = engines[1].model_path
    local = _local(path, score_mode="logits")
    served = _openai(engines[1], monkeypatch, score_mode="logits")
    local_ids, served_ids = [], _served_ids(served, monkeypatch)  # batches of one: no padding
    local.model.register_forward_pre_hook(lambda _, args, kwargs: local_ids.append(kwargs["input_ids"][0].tolist()),
                                          with_kwargs=True)
    items, edits = _items(precomputed_dir, tmp_path)
    for system, sources in ((None, None), ("", [item.image for item in items])):  # the default; two images, no system
        kwargs = dict(instructions=[item.instruction for item in items], original_images=sources,
                      system_prompts=system)
        expected = local.batch_evaluate(edits, **kwargs)
        results = served.batch_evaluate(edits, **kwargs)
        assert all(r.ok for r in expected) and all(r.ok for r in results)
        assert [r.score for r in results] == pytest.approx([r.score for r in expected], abs=1e-3)
    assert len(local_ids) == 4 and len(served_ids) == 8
    for k, ids in enumerate(local_ids):  # two requests per item: the prefill, then the prefill and "1"
        assert served_ids[2 * k] == ids[:-1] and served_ids[2 * k + 1] == ids, k
