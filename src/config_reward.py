"""The ``reward_model`` section's checks: its type, rubric and params, and where its judge runs (device
groups, the vLLM servers' GPUs). ``config`` runs them with the rest of a run's checks, and re-exports
every public name here (``from editjudge.config import vllm_servers`` keeps working); ``editjudge serve``
runs them on the ``reward_model`` section alone (``config.load_reward_model_config``).

Every import beyond ``config_types`` is inside a function: reading a config imports no torch.
"""

from __future__ import annotations

import os

from .config_types import RewardModelConfig


def judge_group_problems(reward: RewardModelConfig) -> list[str]:
    """``max_memory`` caps the devices of a group; a judge on single devices takes each whole."""
    from .parallel import is_group, resolve_devices

    params = reward.params
    if params.get("max_memory") is None:
        return []
    spec = reward.devices
    grouped = isinstance(params.get("device"), list) if spec == "auto" else (
        isinstance(spec, (str, list)) and any(is_group(d) for d in resolve_devices(spec)))
    if not grouped:
        return ["reward_model.params.max_memory: applies to a judge on device groups (reward_model.devices: "
                "[[cuda:0, cuda:1], ...]); a judge on one device takes the whole device"]
    return []


def judge_device_spec(reward: RewardModelConfig):
    """The judge's devices as configured: ``reward_model.devices``, or the judge's own ``params.device``
    (a device or a group: one replica) when ``devices`` is ``auto``."""
    spec = reward.devices
    device = reward.params.get("device")
    if spec == "auto" and (isinstance(device, list) or isinstance(device, str) and device != "auto"):
        spec = [device]
    return spec


def vllm_servers(reward: RewardModelConfig, gpu_count: int | None = None) -> list:
    """The ``ServerPlacement`` of each server of a ``type: vllm`` judge (one per score worker): its entry
    of ``reward_model.devices``, its physical GPUs and tensor parallel size (``placement.vllm_placement``,
    with this process's ``CUDA_VISIBLE_DEVICES``). ``gpu_count``: the GPUs this process sees, needed for
    ``auto``. Raises ``PlacementError``."""
    from .models.reward.placement import vllm_placement
    from .parallel import resolve_devices

    spec = judge_device_spec(reward)
    return vllm_placement(spec if spec == "auto" else resolve_devices(spec),
                          reward.params.get("tensor_parallel_size", 1), os.environ.get("CUDA_VISIBLE_DEVICES"),
                          gpu_count)


def vllm_layout_problems(reward: RewardModelConfig, gpu_count: int | None = None) -> list[str]:
    """Whether a ``type: vllm`` judge's servers can be placed (``vllm_servers``): none sharing a GPU,
    every GPU visible. ``gpu_count``: the GPUs this process sees (None: unknown, ``auto`` unchecked)."""
    from .models.reward.placement import PlacementError
    from .parallel import device_problems

    tp = reward.params.get("tensor_parallel_size", 1)
    if reward.type != "vllm" or not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        return []
    spec = judge_device_spec(reward)
    if spec == "auto" and gpu_count is None or device_problems(spec, "", present=False):
        return []  # a malformed device list is reported by device_problems
    try:
        vllm_servers(reward, gpu_count)
    except PlacementError as exc:
        return [f"reward_model.devices: {p}" for p in exc.problems]
    return []


def reward_model_problems(reward_model: RewardModelConfig) -> list[str]:
    """What is wrong with the ``reward_model`` section's type, rubric and params (its devices aside)."""
    from .models.reward import REWARD_MODELS

    problems: list[str] = []
    if reward_model.type not in REWARD_MODELS:
        problems.append(f"reward_model.type: {reward_model.type!r} is not one of {sorted(REWARD_MODELS)}")
    else:
        from .models.reward.rubrics import rubric_problems

        params = dict(reward_model.params)
        rubric = params.get("rubric", "simple")
        problems.extend(f"reward_model.params.{p}" for p in rubric_problems(rubric))
        if params.get("viescore_prompts_dir") is not None:
            from .models.reward.viescore_files import ViescoreFilesError, read_prompts

            if rubric != "viescore":
                problems.append("reward_model.params.viescore_prompts_dir: the official VIEScore prompts need "
                                f"rubric: viescore (got {rubric!r})")
            try:
                read_prompts(str(params["viescore_prompts_dir"]))
            except (ViescoreFilesError, OSError) as exc:
                problems.append(f"reward_model.params.viescore_prompts_dir: {exc}")
        from .protocols.registry import protocol_problems

        problems.extend(protocol_problems(params))  # a benchmark's own scoring: its name, checkout and files
        if rubric != "simple" and params.get("score_mode") == "logits":
            problems.append("reward_model.params.rubric: rubrics other than 'simple' read several named scores "
                            "from generated answers; use score_mode: generate")
        from .models.reward import reward_config_problems

        # The model's files are checked in model_problems (the job) and when the server loads it.
        problems.extend(f"reward_model.params.{p}" for p in
                        reward_config_problems(reward_model.type, params, files=False))
    return problems


