"""The GPU path, as far as a CPU can check it: device binding, timing on the model's own devices,
out-of-memory back-off that frees the failed attempt, judge replicas on device groups, offloaded
editors, and the device script's dry run. ``bench/gpu_check.sh`` checks the rest on GPUs."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import weakref

import pytest
import torch
from PIL import Image

import editjudge.parallel as parallel
from editjudge.config import ConfigError, load_config
from editjudge.models.editing import EditRequest
from editjudge.models.editing.diffusers_editor import PIXEL_NEUTRAL_KEYS, DiffusersEditor
from editjudge.models.reward import Qwen3VLRewardModel
from editjudge.models.reward.batching import ForwardClock
from editjudge.models.reward.results import ScoringStats
from editjudge.parallel import Launch, device_problems, resolve_devices
from editjudge.pipeline import _devices_for, run, scoring_settings_hash
from tests.conftest import ROOT, SAMPLE, tiny_editor
from tests.test_pipeline import lines, main_py, write

BIG = 1 << 22  # float32 elements: 16 MiB, what a failed attempt holds in these tests


# ------------------------------------------------------------------------------- 1. each worker on its own GPU


def test_every_worker_binds_its_own_gpu_before_its_work(monkeypatch):
    """The device each worker is handed becomes its current CUDA device before the stage runs."""
    # _worker_main sets up a spawned worker's logging; keep this process's as it is.
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(index))
    assert parallel.bind_device("cuda:3") == 3 and calls == [3]
    assert parallel.bind_device(["cuda:2", "cuda:5"]) == 2 and calls == [3, 2]  # a group: its first GPU
    assert parallel.bind_device("cpu") is None and parallel.bind_device(["cpu"]) is None and calls == [3, 2]

    seen = []

    def target(*, rank, world_size, device):
        seen.append((rank, world_size, device, list(calls)))

    calls.clear()
    parallel._worker_main(target, {"rank": 1, "world_size": 2, "device": "cuda:1"}, logging.INFO, 2)
    parallel.run_workers(target, ["cuda:6"])  # one worker runs in this process, bound the same way
    assert seen == [(1, 2, "cuda:1", [1]), (0, 1, "cuda:6", [1, 6])]

    # torchrun: LOCAL_RANK picks the device or group; a group is never shared by two ranks.
    groups = [["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]
    assert Launch(rank=3, world_size=4, local_rank=1).device(groups) == ["cuda:2", "cuda:3"]
    assert Launch(rank=1, world_size=4, local_rank=1).device(["cuda:0"]) == "cuda:0"
    with pytest.raises(ValueError, match="start one process per group"):
        Launch(rank=2, world_size=4, local_rank=2).device(groups)


class _OnGpus(torch.nn.Module):
    """A module whose parameters say they live on cuda:3 and cuda:5 (a replica over a group)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def parameters(self, recurse: bool = True):
        class Placed:
            def __init__(self, index):
                self.is_cuda, self.device = True, torch.device("cuda", index)

        return iter([Placed(5), Placed(3), Placed(5)])

    def forward(self, input_ids):
        return self.linear(input_ids.float())


class _Event:
    """A stand-in for ``torch.cuda.Event``: a tick of a fake GPU clock (ms) per record, per device."""

    log: list = []
    ticks: dict = {}

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.device = self.ms = None

    def record(self, stream):
        self.device = stream
        _Event.ticks[stream] = _Event.ticks.get(stream, 0) + (10 if stream.index == 5 else 1)
        self.ms = _Event.ticks[stream]
        _Event.log.append(("record", stream))

    def synchronize(self):
        _Event.log.append(("wait", self.device))

    def elapsed_time(self, end):
        assert end.device == self.device
        return end.ms - self.ms


def test_forward_clock_times_the_models_own_gpus_without_waiting_per_call(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    monkeypatch.setattr(torch.cuda, "Event", _Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: device)  # the stream names its device
    _Event.log, _Event.ticks = [], {}
    model, stats = _OnGpus(), ScoringStats()
    with ForwardClock(model, stats) as clock:
        model(input_ids=torch.ones(1, 4, 2))
        for _ in range(3):
            model(input_ids=torch.ones(1, 1, 2))
        # Calls record events on each of the model's GPUs and never wait: nothing is added yet.
        gpus = [torch.device("cuda:3"), torch.device("cuda:5")]
        assert _Event.log == [("record", gpu) for _ in range(8) for gpu in gpus]
        assert stats.prefill_seconds == 0 and stats.decode_seconds == 0
        clock.flush()
    # One wait per GPU at the flush, never a synchronize() (bare or not) per call.
    assert synced == [] and _Event.log[16:] == [("wait", gpu) for gpu in gpus]
    # Each call's time is its longest span over the GPUs (cuda:5's clock ticks 10 ms per record).
    assert stats.prefill_seconds == pytest.approx(0.010) and stats.decode_seconds == pytest.approx(0.030)
    assert stats.prefill_tokens == 4 and stats.decode_tokens == 3


# ------------------------------------------------------------------------------- 2. out-of-memory back-off


def _alive(refs) -> list[bool]:
    return [ref() is not None for ref in refs]


def test_judge_retries_only_after_the_failed_attempts_memory_is_gone(judge_path, graded_images):
    """A batch whose forward call allocates, then runs out of memory, inside the real generate:
    when each retry starts, the tensors of every failed attempt are already freed."""
    judge = Qwen3VLRewardModel(judge_path, batch_size=4, max_new_tokens=12, show_progress=False)
    images = graded_images[0][:4]
    expected = judge.batch_score(images, use_batch_inference=False)
    refs, alive_at_start = [], []
    layer = judge.model.model.language_model.layers[0]

    def allocate_then_fail(module, args):
        if args[0].shape[0] > 1:
            held = torch.ones(BIG)  # the activations of a batch that does not fit
            refs.append(weakref.ref(held))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 MiB (injected)")

    def on_call(module, args, kwargs):
        alive_at_start.append(_alive(refs))

    handles = [layer.register_forward_pre_hook(allocate_then_fail),
               judge.model.register_forward_pre_hook(on_call, with_kwargs=True)]
    try:
        scores = judge.batch_score(images)
    finally:
        for handle in handles:
            handle.remove()
    assert scores == expected  # 4 -> 2 + 2 -> 1 + 1 + 1 + 1, every item scored
    assert len(refs) == 3 and judge.stats.oom_splits == 3
    assert not any(_alive(refs))
    # Every call after the first started with no failed attempt's tensor alive (the old retry ran
    # inside the except block, while the traceback still held them).
    assert len(alive_at_start) > 3 and all(not any(alive) for alive in alive_at_start[1:])


def test_editor_retries_only_after_the_failed_attempts_memory_is_gone(monkeypatch):
    editor = DiffusersEditor("ip2p", tiny_editor("instruct-pix2pix"), dtype="float32", batch_size=3,
                             params={"num_inference_steps": 2})
    real = DiffusersEditor._run
    refs, alive_at_start = [], []

    def run_or_fail(self, prompts, images, seeds):
        alive_at_start.append(_alive(refs))
        held = torch.ones(BIG)
        refs.append(weakref.ref(held))
        if len(prompts) > 1 or "fail" in prompts[0]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 MiB (injected)")
        return real(self, prompts, images, seeds)

    monkeypatch.setattr(DiffusersEditor, "_run", run_or_fail)
    sources = [Image.new("RGB", (32, 32), (40 * i, 90, 200)) for i in range(3)]
    requests = [EditRequest(f"i{i}", source, text, seed=i)
                for i, (source, text) in enumerate(zip(sources, ["warmer", "fail here", "cooler"]))]
    results = editor.edit(requests)
    assert [type(r).__name__ for r in results] == ["Image", "OutOfMemoryError", "Image"]
    assert alive_at_start == [[], [False], [False, False], [False, False, False]]
    # The failure kept in the results holds no traceback, so nothing of its attempt stays alive.
    failure = results[1]
    assert failure.__traceback__ is None and failure.__context__ is None and not any(_alive(refs))
    assert editor.batch_fallbacks == 1
    editor.close()


# ------------------------------------------------------------------------------- 3. judges on device groups


@pytest.mark.parametrize("spec, message", [
    ([["cuda:0", "cuda:1"], ["cuda:1", "cuda:2"]], "cuda:1 is also in reward_model.devices[0]"),
    ([["cuda:0", "cuda:0"]], "names a GPU twice"),
    ([["cuda", "cuda:1"]], "GPUs named with their index"),
    ([["cpu", "cuda:0"]], "GPUs named with their index"),
    ([[]], "an empty device group"),
    ([["gpu0"]], "'gpu0' is not a device"),
    (["cuda:0", ["cuda:0", "cuda:1"]], "cuda:0 is also in the group reward_model.devices[1]"),
    ("cuda:0+cuda:1,cuda:1+cuda:2", "cuda:1 is also in"),
])
def test_device_group_mistakes_are_config_errors(spec, message):
    assert any(message in p for p in device_problems(spec, "reward_model.devices")), device_problems(spec, "x")


def test_device_groups_in_the_config(tmp_path, judge_path):
    data = {"benchmark": {"path": str(SAMPLE)}, "output_dir": str(tmp_path / "out"),
            "editing": {"devices": ["cpu"], "editors": [{"name": "e", "type": "precomputed", "image_dir": str(tmp_path)}]},
            "reward_model": {"devices": [["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]],
                             "params": {"model_path": judge_path, "max_memory": {"cuda:0": "60GiB", "cuda:3": 70_000_000_000}}}}
    # models=False: without whether this machine has these GPUs (a config error where it lacks them).
    config = load_config(write(tmp_path, data), models=False)
    assert _devices_for(config, "score") == [["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]
    assert _devices_for(config, "edit") == ["cpu"]
    # A group is one worker and where it is does not decide a score.
    other = load_config(write(tmp_path, data, "other.yaml"), ["reward_model.devices=[cpu]",
                                                               "reward_model.params.max_memory=null"])
    assert scoring_settings_hash(other) == scoring_settings_hash(config)

    bad = json.loads(json.dumps(data))
    bad["editing"]["devices"] = [["cuda:0", "cuda:1"]]
    bad["reward_model"]["params"]["max_memory"] = {"gpu:0": "lots", "cuda:1": -3}
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, bad))
    text = str(error.value)
    assert "editing.devices[0]: ['cuda:0', 'cuda:1'] is a device group; groups are for the judge" in text
    assert "max_memory: key 'gpu:0' is not a device" in text and "max_memory.cuda:1: -3 is not" in text
    single = json.loads(json.dumps(data))
    single["reward_model"]["devices"] = ["cuda:0", "cuda:1"]
    with pytest.raises(ConfigError, match="max_memory: applies to a judge on device groups"):
        load_config(write(tmp_path, single))
    assert resolve_devices("cuda:0+cuda:1,cuda:2+cuda:3") == [["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]


def test_a_group_load_through_device_map_scores_like_today(judge, logits_judge, judge_path, graded_images,
                                                          monkeypatch):
    """device=['cpu'] goes through accelerate's device_map, max_memory restricted to the group's devices."""
    from transformers import AutoModelForImageTextToText

    real, loads = AutoModelForImageTextToText.from_pretrained, []

    def spy(*args, **kwargs):
        loads.append(copy.deepcopy({k: kwargs.get(k) for k in ("device_map", "max_memory")}))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    images = graded_images[0][::3]
    for today, mode in ((judge, "generate"), (logits_judge, "logits")):
        grouped = Qwen3VLRewardModel(judge_path, device=["cpu"], max_memory="4GiB", batch_size=4, max_new_tokens=12,
                                     score_mode=mode, show_progress=False)
        assert loads[-1] == {"device_map": "auto", "max_memory": {"cpu": "4GiB"}}
        assert set(grouped.placement) == {"cpu"}
        assert grouped.batch_score(images) == today.batch_score(images)
    Qwen3VLRewardModel(judge_path, device="cpu", show_progress=False)  # one device: straight onto it
    assert loads[-1] == {"device_map": "cpu", "max_memory": None}
    with pytest.raises(ValueError, match="max_memory applies to a judge on a device group"):
        Qwen3VLRewardModel(judge_path, device="cpu", max_memory="4GiB")
    with pytest.raises(ValueError, match="does not fit on cpu: weights were placed on disk"):
        Qwen3VLRewardModel(judge_path, device=["cpu"], max_memory=20_000)  # bytes


def test_two_replica_groups_shard_and_merge_like_one_worker(tmp_path, judge_path, precomputed_dir):
    data = {"benchmark": {"path": str(SAMPLE), "limit": 6}, "output_dir": str(tmp_path / "one"),
            "editing": {"devices": ["cpu"], "editors": [{"name": "pre", "type": "precomputed",
                                                         "image_dir": str(precomputed_dir)}]},
            "reward_model": {"devices": [["cpu"]], "params": {"model_path": judge_path, "batch_size": 2,
                                                              "max_new_tokens": 12, "show_progress": False}}}
    run(load_config(write(tmp_path, data, "one.yaml")), "all")
    data["output_dir"] = str(tmp_path / "two")
    result = main_py(write(tmp_path, data, "two.yaml"), "--set", 'reward_model.devices=[["cpu"],["cpu"]]')
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage score: 2 worker(s) on cpu, cpu" in result.stderr and "[rank 1]" in result.stderr
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds",)} for r in rows]  # noqa: E731
    one, two = lines(tmp_path / "one" / "scores.jsonl"), lines(tmp_path / "two" / "scores.jsonl")
    assert len(two) == 6 and strip(two) == strip(one)


# ------------------------------------------------------------------------------- 4. editors bigger than a GPU


def _editor_entry(tmp_path, **extra) -> dict:
    return {"benchmark": {"path": str(SAMPLE)}, "output_dir": str(tmp_path / "out"),
            "editing": {"devices": ["cpu"], "editors": [dict({"name": "q", "type": "diffusers",
                                                              "model_path": tiny_editor("qwen-image-edit")}, **extra)]},
            "reward_model": {"params": {"model_path": tiny_editor("qwen-image-edit")}}}


def test_offload_and_vae_options_are_validated(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, _editor_entry(tmp_path, offload="cpu", vae_tiling="yes")))
    text = str(error.value)
    assert "editing.editors[0].offload: must be one of none, model, sequential, got 'cpu'" in text
    assert "editing.editors[0].vae_tiling: expected bool" in text
    entry = _editor_entry(tmp_path)
    entry["editing"]["editors"] = [{"name": "pre", "type": "precomputed", "image_dir": str(tmp_path), "offload": "model"}]
    with pytest.raises(ConfigError, match=r"editors\[0\].offload: not used by type 'precomputed'"):
        load_config(write(tmp_path, entry))
    with pytest.raises(ConfigError, match=r"editors\[0\].offload: 'sequential' needs a GPU"):
        load_config(write(tmp_path, _editor_entry(tmp_path, offload="sequential")))
    assert PIXEL_NEUTRAL_KEYS == {"offload"}  # vae_tiling and vae_slicing can change pixels


def test_offloaded_editors_give_the_same_pixels(caplog):
    """Model offload runs through diffusers' accelerate hooks (onto the CPU here: nothing saved, same math)."""
    path = tiny_editor("qwen-image-edit")
    request = [EditRequest("a", Image.new("RGB", (48, 32), (200, 60, 30)), "make it blue", seed=7)]
    params = {"num_inference_steps": 2}
    plain = DiffusersEditor("q", path, dtype="float32", params=params)
    offloaded = DiffusersEditor("q", path, dtype="float32", params=params, offload="model")
    assert getattr(offloaded.pipe.transformer, "_hf_hook", None) is not None  # really offloaded
    assert offloaded.edit(request)[0].tobytes() == plain.edit(request)[0].tobytes()
    assert "offload model on the CPU saves nothing" in caplog.text
    for editor in (plain, offloaded):
        editor.close()
    with pytest.raises(ValueError, match="offload: sequential needs a GPU"):
        DiffusersEditor("q", path, dtype="float32", params=params, offload="sequential")
    tiled = DiffusersEditor("q", path, dtype="float32", params=params, vae_tiling=True, vae_slicing=True)
    assert tiled.pipe.vae.use_tiling and tiled.pipe.vae.use_slicing
    assert isinstance(tiled.edit(request)[0], Image.Image)
    tiled.close()


# ------------------------------------------------------------------------------- 5. the device script


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    """bench/gpu_check.sh --dry-run: every section of the device script, tiny, on the CPU."""
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True
    sections = report["sections"]
    assert set(sections) == {"judge", "workers", "group", "out_of_memory", "forward_clock", "editor_offload",
                             "sleep_wake"}
    assert sections["sleep_wake"]["how"] == "offload" and sections["sleep_wake"]["same_answers_after_wake"] is True
    judge = sections["judge"]
    assert [(r["mode"], r["batch_size"]) for r in judge] == [(m, b) for m in ("generate", "logits") for b in (1, 2, 4)]
    assert all(r["images_per_s"] > 0 and 0 <= r["agreement_within_0.5"] <= 1 for r in judge)
    assert [w["device"] for w in sections["workers"]["workers"]] == ["cpu", "cpu"]
    assert sections["group"]["scores_equal_single_device"] is True
    assert sections["out_of_memory"]["oom_splits"] >= 1 and sections["out_of_memory"]["all_scored"] is True
    assert sections["editor_offload"]["same_pixels"] is True
    clock = sections["forward_clock"]  # real generate calls: each setting timed, the clock saw its decode steps
    assert clock["steps"] == 6 and set(clock["ms_per_step"]) == {"none", "clock", "syncing every call"}
    assert all(ms > 0 for ms in clock["ms_per_step"].values()) and clock["clock_decode_ms_per_step"] > 0
    assert "gpu_check summary" in result.stdout and "DRY RUN" in result.stdout
