"""Where a judge's weights go: one device, or a group of devices one replica spans.

A single device is loaded with ``device_map=<device>``: transformers reads the safetensors shards
straight onto it. A group (``device=["cuda:0", "cuda:1"]``) is loaded with ``device_map="auto"``
restricted to the group's devices through ``max_memory`` (accelerate splits the layers over them,
balanced, and moves activations between them), again without a full copy in host memory. Without
``max_memory`` each GPU of the group offers its free memory; a replica that does not fit is an
error, never a silent spill into host memory or onto disk.

``max_memory`` (optional): one size for every device of the replica (``"70GiB"``, or bytes), or a
mapping from device to size (``{"cuda:0": "40GiB", "cuda:1": "75GiB"}``); devices it leaves out
offer their free memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)", re.IGNORECASE)  # what accelerate reads
DEVICE_NAME = re.compile(r"cpu|cuda:\d+")


def _size_ok(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and bool(MEMORY_SIZE.fullmatch(value.strip()))


def placement_problems(values: dict) -> list[str]:
    """Problems with ``device`` (when it is a group) and ``max_memory``; only keys present are checked."""
    problems = []
    device = values.get("device")
    if isinstance(device, (list, tuple)):
        if not device or not all(isinstance(d, str) and DEVICE_NAME.fullmatch(d) for d in device):
            problems.append(f"device: a group is a list of devices named cuda:N (or ['cpu']), got {device!r}")
        elif len(set(device)) != len(device):
            problems.append(f"device: {device!r} names a device twice")
        elif "cpu" in device and len(device) > 1:
            problems.append(f"device: a group is GPUs only, or ['cpu'] alone; got {device!r}")
    elif device is not None and not isinstance(device, str):
        problems.append(f"device: expected a device like 'cuda:0', 'auto', or a group list; got {device!r}")
    if "max_memory" in values and values["max_memory"] is not None:
        memory = values["max_memory"]
        expected = "a size like '70GiB' (or bytes) for each device, or a mapping {device: size}"
        if isinstance(memory, dict):
            for key, size in memory.items():
                if not (isinstance(key, str) and DEVICE_NAME.fullmatch(key)):
                    problems.append(f"max_memory: key {key!r} is not a device (cuda:N or cpu)")
                if not _size_ok(size):
                    problems.append(f"max_memory.{key}: {size!r} is not {expected.split(' (')[0]}")
        elif not _size_ok(memory):
            problems.append(f"max_memory must be {expected}, got {memory!r}")
    return problems


def _accelerate_key(device: str):
    return "cpu" if device == "cpu" else int(device.split(":")[1])


def _free_bytes(device: str) -> int:
    import torch

    if device == "cpu":
        import psutil

        return int(psutil.virtual_memory().available)
    return int(torch.cuda.mem_get_info(int(device.split(":")[1]))[0])


def group_max_memory(devices: list[str], max_memory: Any = None) -> dict:
    """accelerate's ``max_memory`` for a group: only its devices, each with its cap or its free memory."""
    memory = {}
    for device in devices:
        if isinstance(max_memory, dict):
            size = max_memory.get(device)
        else:
            size = max_memory
        memory[_accelerate_key(device)] = size if size is not None else _free_bytes(device)
    return memory


def load_kwargs(device, max_memory: Any = None) -> dict:
    """``from_pretrained`` keyword arguments that load straight onto ``device`` (a device or a group)."""
    if isinstance(device, (list, tuple)):
        return {"device_map": "auto", "max_memory": group_max_memory(list(device), max_memory)}
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # transformers would read LOCAL_RANK, not the current GPU
        device = torch.device("cuda", torch.cuda.current_device())
    return {"device_map": str(device)}


def _canonical(name: str) -> str:
    """One name per device: ``cpu:0`` is ``cpu`` (the CPU has one device), ``cuda:1`` stays."""
    import torch

    if name in ("meta", "disk"):
        return name
    device = torch.device(name)
    return "cpu" if device.type == "cpu" else str(device)


def check_placement(model, devices: list[str]) -> dict[str, int]:
    """``{device: number of weight tensors}`` of a loaded model; raises when any weight left the group.

    Weights only (buffers such as rotary tables are placed by the library); a weight on ``meta`` was
    offloaded (to disk or host memory), and accelerate's own map (``hf_device_map``, set when the
    model is split) names ``cpu`` or ``disk`` for what it offloaded.
    """
    counts: dict[str, int] = {}
    for tensor in model.parameters():
        counts[str(tensor.device)] = counts.get(str(tensor.device), 0) + 1
    mapped = {f"cuda:{v}" if isinstance(v, int) else str(v) for v in (getattr(model, "hf_device_map", None) or {}).values()}
    outside = sorted({_canonical(d) for d in set(counts) | mapped} - {_canonical(d) for d in devices})
    if outside:
        names = [d for d in outside if d != "meta"] or ["disk or host memory (offloaded)"]
        raise ValueError(f"the judge does not fit on {'+'.join(devices)}: weights were placed on {', '.join(names)}; "
                         "use a larger group, raise max_memory, or quantization: int8")
    return counts


# ------------------------------------------------------------------ vLLM servers


class PlacementError(ValueError):
    """A vLLM layout that cannot run: servers sharing a GPU, GPUs that are not visible, ..."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ServerPlacement:
    """Where one vLLM server runs: its score worker's entry (``device``, logical names as this process
    sees its GPUs), the physical GPUs the server gets (``gpus``, as ``CUDA_VISIBLE_DEVICES`` names
    them; empty on the CPU) and its tensor parallel size."""

    device: Any
    gpus: tuple[str, ...]
    tensor_parallel_size: int

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def env(self) -> dict[str, str]:
        """The server's environment on top of ours: its GPUs only, or vLLM's CPU KV cache (1 GiB)."""
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}
        return {"VLLM_CPU_KVCACHE_SPACE": "1"}  # GiB; vLLM's default takes far more than CI has (kept if set)

    @property
    def label(self) -> str:
        device = "+".join(self.device) if isinstance(self.device, (list, tuple)) else str(self.device)
        if not self.gpus:
            return f"{device}: CPU"
        return (f"{device}: physical GPU{'s' if len(self.gpus) > 1 else ''} {','.join(self.gpus)} "
                f"(tensor parallel {self.tensor_parallel_size})")


def visible_gpus(inherited: str | None, gpu_count: int | None) -> list[str] | None:
    """The physical names of the GPUs this process sees, in its own (logical) order: the entries of
    ``CUDA_VISIBLE_DEVICES`` when it is set, else ``0 .. gpu_count-1``; None when unknown."""
    if inherited is not None:  # the driver stops at the first entry it cannot use: gpu_count of them are real
        listed = [d.strip() for d in inherited.split(",") if d.strip()]
        return listed if gpu_count is None else listed[:gpu_count]
    return None if gpu_count is None else [str(i) for i in range(gpu_count)]


def gpu_count_without_torch() -> int:
    """How many GPUs this process sees, without importing torch (for the plan printed first):
    ``CUDA_VISIBLE_DEVICES`` when set, else the NVIDIA driver's list under /proc."""
    import os

    visible = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), None)
    if visible is not None:
        return len(visible)
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def vllm_placement(devices: Any, tensor_parallel_size: int = 1, inherited: str | None = None,
                   gpu_count: int | None = None) -> list[ServerPlacement]:
    """One ``ServerPlacement`` per vLLM server (per score worker); a pure function.

    ``devices``: ``"auto"`` or the list of worker entries (``"cuda:2"``, ``"cpu"``, or a group
    ``["cuda:0", "cuda:1"]``); ``inherited``: this process's ``CUDA_VISIBLE_DEVICES`` (None: unset);
    ``gpu_count``: the GPUs this process sees (needed for ``auto``; where known, an entry beyond
    them is a problem). A device ``cuda:k`` with tensor parallel size ``t`` is this process's GPUs
    k .. k+t-1; a group is its own GPUs (tensor parallel: its size); ``auto`` is every visible GPU,
    ``t`` at a time (the CPU when there is none). Raises ``PlacementError`` naming every problem:
    servers that would share a GPU, GPUs that are not visible, a group whose size is not
    ``tensor_parallel_size``.
    """
    tp = tensor_parallel_size
    visible = visible_gpus(inherited, gpu_count)
    where = (f"CUDA_VISIBLE_DEVICES={inherited} gives this process {len(visible)} GPU(s)" if inherited is not None
             else f"this machine has {len(visible)} GPU(s)" if visible is not None else "")
    problems: list[str] = []
    if devices == "auto":
        count = len(visible or [])
        if count == 0:
            return [ServerPlacement("cpu", (), tp)]
        if tp > count:
            raise PlacementError([f"tensor_parallel_size {tp} needs {tp} GPUs per server; {where}"])
        devices = [[f"cuda:{s * tp + i}" for i in range(tp)] if tp > 1 else f"cuda:{s}" for s in range(count // tp)]
    entries = []
    for n, entry in enumerate(devices):
        group = isinstance(entry, (list, tuple))
        names = list(entry) if group else [entry]
        if names == ["cpu"]:
            entries.append((n, entry, [], tp))
            continue
        indices = []
        for name in names:
            if name == "cuda":
                name = "cuda:0"
            if not (isinstance(name, str) and name.startswith("cuda:") and name[5:].isdigit()):
                problems.append(f"server {n} ({entry!r}): {name!r} is not a GPU (cuda:N) and a vLLM server is "
                                "on GPUs or on the CPU alone")
                break
            indices.append(int(name[5:]))
        else:
            if group:
                if tp != 1 and tp != len(indices):
                    problems.append(f"server {n} ({'+'.join(names)}): a group of {len(indices)} GPUs runs one server "
                                    f"with tensor parallel {len(indices)}, but tensor_parallel_size is {tp}")
                entries.append((n, entry, indices, len(indices)))
            else:
                entries.append((n, entry, list(range(indices[0], indices[0] + tp)), tp))
    owner: dict[str, int] = {}
    placements = []
    for n, entry, indices, size in entries:
        if indices and visible is not None and max(indices) >= len(visible):
            missing = ", ".join(f"cuda:{i}" for i in indices if i >= len(visible))
            problems.append(f"server {n} ({_label(entry)}, tensor parallel {size}) needs {missing}; {where}")
            continue
        gpus = tuple(visible[i] for i in indices) if visible is not None else tuple(str(i) for i in indices)
        for gpu in gpus:
            if gpu in owner:
                problems.append(f"server {n} ({_label(entry)}, tensor parallel {size}) would share GPU {gpu} with "
                                f"server {owner[gpu]}: each server needs GPUs of its own (with tensor_parallel_size "
                                f"{tp}, list one GPU in {tp}: {_spaced(tp)}, or use devices: auto)")
            owner.setdefault(gpu, n)
        placements.append(ServerPlacement(entry, gpus, size))
    if problems:
        raise PlacementError(problems)
    return placements


def _label(entry) -> str:
    return "+".join(entry) if isinstance(entry, (list, tuple)) else str(entry)


def _spaced(tp: int) -> str:
    return "[" + ", ".join(f"cuda:{i * tp}" for i in range(3)) + ", ...]"
