"""The vLLM judge without vLLM: what it starts its servers with, and what its response cache is keyed by.

A fake server (``tests/fake_vllm.py``) stands in for ``vllm.entrypoints.openai.api_server``: it
records the flags and CUDA environment each server starts with and counts the requests that reach it.
"""

from __future__ import annotations

import pytest
from PIL import Image

from editjudge.models.reward.vllm_judge import VLLMRewardModel
from editjudge.pipeline import THROUGHPUT_PARAMS
from tests.fake_vllm import events, fake_python


def start(tmp_path, **params) -> VLLMRewardModel:
    log = tmp_path / "fake-vllm.jsonl"
    params = {"model_path": "tiny/judge", "python": fake_python(tmp_path, log), "ready_timeout": 60,
              "cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "out"), **params}
    return VLLMRewardModel(**params)


def score_once(tmp_path, **params) -> int:
    """Score one image with a judge started with ``params``; the requests that reached its server."""
    log = tmp_path / "fake-vllm.jsonl"
    before = len(events(log, "request"))
    judge = start(tmp_path, **params)
    try:
        result = judge.batch_evaluate([Image.new("RGB", (64, 48), (200, 200, 200))])[0]
    finally:
        judge.close()
    assert result.ok and result.score == 5
    return len(events(log, "request")) - before


@pytest.mark.parametrize("change", [{"max_pixels": 4096}, {"min_pixels": 2048}, {"dtype": "bfloat16"},
                                    {"max_model_len": 8192}, {"server_args": ["--quantization", "fp8"]}])
def test_what_shapes_the_servers_answers_keys_its_cache(tmp_path, change):
    assert score_once(tmp_path) == 1
    assert score_once(tmp_path) == 0  # the same settings: answered from the cache
    key = next(iter(change))
    assert key not in THROUGHPUT_PARAMS  # so the scoring settings hash changes too: the stage rescores ...
    assert score_once(tmp_path, **change) == 1  # ... and the rescoring really asks the server
    assert score_once(tmp_path, **change) == 0
