"""The vLLM judge without vLLM: what it starts its servers with, and what its response cache is keyed by.

A fake server (``tests/fake_vllm.py``) stands in for ``vllm.entrypoints.openai.api_server``: it
records the flags and CUDA environment each server starts with and counts the requests that reach it.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from editjudge.config import ConfigError, load_config
from editjudge.models.reward.placement import PlacementError, vllm_placement
from editjudge.models.reward.vllm_judge import DEFAULT_MAX_CONCURRENT, VLLMRewardModel
from editjudge.plan import plan_lines
from tests.fake_vllm import events, fake_python
from tests.test_openai_judge import judge_config
from tests.test_pipeline import main_py, write


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
    assert key not in VLLMRewardModel.speed_params  # so the scoring settings hash changes too: the stage rescores ...
    assert score_once(tmp_path, **change) == 1  # ... and the rescoring really asks the server
    assert score_once(tmp_path, **change) == 0


# ------------------------------------------------------------------ placement: a pure function


def gpus(devices, tp=1, inherited=None, count=None) -> list[tuple]:
    return [(p.gpus, p.tensor_parallel_size, p.env) for p in vllm_placement(devices, tp, inherited, count)]


def test_eight_gpus_tensor_parallel_2_is_four_servers_on_gpus_of_their_own():
    assert gpus("auto", 2, None, 8) == [
        (("0", "1"), 2, {"CUDA_VISIBLE_DEVICES": "0,1"}), (("2", "3"), 2, {"CUDA_VISIBLE_DEVICES": "2,3"}),
        (("4", "5"), 2, {"CUDA_VISIBLE_DEVICES": "4,5"}), (("6", "7"), 2, {"CUDA_VISIBLE_DEVICES": "6,7"})]
    assert [p.device for p in vllm_placement("auto", 2, None, 8)][:2] == [["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]
    assert gpus(["cuda:0", "cuda:2", "cuda:4", "cuda:6"], 2, None, 8) == gpus("auto", 2, None, 8)
    assert gpus("auto", 2, None, 5)[-1][0] == ("2", "3")  # the odd GPU out is left idle
    assert gpus("auto", 1, None, 2) == [(("0",), 1, {"CUDA_VISIBLE_DEVICES": "0"}),
                                        (("1",), 1, {"CUDA_VISIBLE_DEVICES": "1"})]


def test_the_inherited_cuda_visible_devices_maps_our_gpus_to_physical_ones():
    # A scheduler gave this job GPUs 4-7: our cuda:0 is GPU 4.
    assert gpus(["cuda:0"], 2, "4,5,6,7") == [(("4", "5"), 2, {"CUDA_VISIBLE_DEVICES": "4,5"})]
    assert gpus("auto", 2, "4,5,6,7", 4) == [(("4", "5"), 2, {"CUDA_VISIBLE_DEVICES": "4,5"}),
                                             (("6", "7"), 2, {"CUDA_VISIBLE_DEVICES": "6,7"})]
    assert gpus([["cuda:1", "cuda:3"]], 1, "GPU-aa,GPU-bb,GPU-cc,GPU-dd")[0][0] == ("GPU-bb", "GPU-dd")  # UUIDs too
    with pytest.raises(PlacementError, match=r"needs cuda:4, cuda:5; CUDA_VISIBLE_DEVICES=4,5,6,7 gives this "):
        vllm_placement(["cuda:4"], 2, "4,5,6,7")


def test_a_device_group_is_one_server_with_tensor_parallel_over_its_gpus():
    assert gpus([["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]) == [
        (("0", "1"), 2, {"CUDA_VISIBLE_DEVICES": "0,1"}), (("2", "3"), 2, {"CUDA_VISIBLE_DEVICES": "2,3"})]
    assert gpus([["cuda:0", "cuda:1"]], 2) == gpus([["cuda:0", "cuda:1"]])
    with pytest.raises(PlacementError, match="a group of 2 GPUs runs one server with tensor parallel 2, but "
                                             "tensor_parallel_size is 4"):
        vllm_placement([["cuda:0", "cuda:1"]], 4)


def test_the_cpu_has_no_gpus_and_vllms_cpu_kv_cache_setting():
    assert gpus(["cpu"]) == [((), 1, {"VLLM_CPU_KVCACHE_SPACE": "1"})]
    assert gpus([["cpu"]]) == gpus(["cpu"])
    assert gpus("auto", 2, None, 0) == [((), 2, {"VLLM_CPU_KVCACHE_SPACE": "1"})]  # no GPU: the CPU


@pytest.mark.parametrize("devices, tp, count, message", [
    (["cuda:0", "cuda:1"], 2, None, "server 1 (cuda:1, tensor parallel 2) would share GPU 1 with server 0"),
    ([["cuda:0", "cuda:1"], "cuda:1"], 1, None, "server 1 (cuda:1, tensor parallel 1) would share GPU 1"),
    ("auto", 4, 2, "tensor_parallel_size 4 needs 4 GPUs per server; this machine has 2 GPU(s)"),
    (["cuda:1"], 2, 2, "server 0 (cuda:1, tensor parallel 2) needs cuda:2; this machine has 2 GPU(s)"),
])
def test_overlapping_or_impossible_layouts_are_refused(devices, tp, count, message):
    with pytest.raises(PlacementError) as caught:
        vllm_placement(devices, tp, None, count)
    assert message in str(caught.value)


def test_an_overlapping_layout_is_a_configuration_error_exit_2_before_any_work(tmp_path, judge_path, precomputed_dir):
    data = judge_config(tmp_path, judge_path, precomputed_dir,
                        {"type": "vllm", "devices": ["cuda:0", "cuda:1"],
                         "params": {"model_path": judge_path, "python": fake_python(tmp_path, tmp_path / "log"),
                                    "tensor_parallel_size": 2}})
    with pytest.raises(ConfigError, match="would share GPU 1 with server 0"):
        load_config(write(tmp_path, data), models=False)
    result = main_py(write(tmp_path, data))
    assert result.returncode == 2 and "would share GPU 1 with server 0" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "log").exists()


def auto_tp2_config(tmp_path, judge_path, precomputed_dir):
    """A vLLM judge on every visible GPU, two per server (the fake server stands in for vLLM)."""
    data = judge_config(tmp_path, judge_path, precomputed_dir,
                        {"type": "vllm", "devices": "auto",
                         "params": {"model_path": judge_path, "python": fake_python(tmp_path, tmp_path / "log"),
                                    "tensor_parallel_size": 2}})
    return load_config(write(tmp_path, data), models=False)


def test_the_plan_names_each_servers_physical_gpus(tmp_path, judge_path, precomputed_dir, monkeypatch):
    config = auto_tp2_config(tmp_path, judge_path, precomputed_dir)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    lines = [line for line in plan_lines(config, stage="score", overwrite=False, export=[], source="x")
             if line.startswith("  vllm")]
    assert lines == ["  vllm       server 0: cuda:0+cuda:1: physical GPUs 4,5 (tensor parallel 2)",
                     "  vllm       server 1: cuda:2+cuda:3: physical GPUs 6,7 (tensor parallel 2)"]


# ------------------------------------------------------------------ what a server starts with


def started(log) -> dict:
    (start,) = events(log, "start")
    argv = start["argv"]
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    return {"flags": flags, "env": start["env"]}


@pytest.mark.parametrize("device, tp", [(["cuda:0", "cuda:1"], 1), ("cuda:0", 2)])
def test_a_gpu_server_gets_its_physical_gpus_and_no_cpu_settings(tmp_path, monkeypatch, device, tp):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    judge = start(tmp_path, device=device, tensor_parallel_size=tp, gpu_memory_utilization=0.8)
    judge.close()
    server = started(tmp_path / "fake-vllm.jsonl")
    assert server["env"] == {"CUDA_VISIBLE_DEVICES": "4,5"}  # not 0,1; no CPU KV-cache variable
    assert server["flags"]["--tensor-parallel-size"] == "2"
    assert server["flags"]["--dtype"] == "auto"  # the checkpoint's dtype, not the CPU's float32
    assert server["flags"]["--gpu-memory-utilization"] == "0.8"
    assert json.loads(server["flags"]["--limit-mm-per-prompt"])["image"] == 3  # source and two edits (pairwise)
    assert judge.max_concurrent == DEFAULT_MAX_CONCURRENT == 64


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_a_cpu_server_runs_float32_with_a_small_kv_cache(tmp_path, monkeypatch, device):
    import torch

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # auto without a GPU: the CPU
    start(tmp_path, device=device).close()
    server = started(tmp_path / "fake-vllm.jsonl")
    assert server["env"].get("VLLM_CPU_KVCACHE_SPACE") == "1" and "CUDA_VISIBLE_DEVICES" not in server["env"]
    assert server["flags"]["--dtype"] == "float32" and server["flags"]["--tensor-parallel-size"] == "1"


def test_the_score_workers_are_the_servers_groups(tmp_path, judge_path, precomputed_dir, monkeypatch):
    import torch

    from editjudge.pipeline import _devices_for

    config = auto_tp2_config(tmp_path, judge_path, precomputed_dir)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert _devices_for(config, "score") == [["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]  # not cuda:0 .. cuda:3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert _devices_for(config, "score") == ["cpu"]
