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
