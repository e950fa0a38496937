"""One process per device: device lists, rank-strided shards, and the two ways to get workers.

* Local: the parent starts one spawned worker per entry of ``devices`` and waits for them.
* Launched: under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment)
  every process is already a worker; it takes rank ``RANK`` and device ``LOCAL_RANK``, and the
  ranks meet at barriers (a gloo process group, CPU only, so it works with or without GPUs).

A worker's device is one device (``"cuda:3"``) or a *group*, a list of devices one judge replica
spans (``["cuda:0", "cuda:1"]``, written ``cuda:0+cuda:1`` in a string). A group is one worker:
one rank, one shard, one part file. Every worker makes its (first) GPU the current CUDA device
before any work (``bind_device``), so nothing it runs lands on ``cuda:0`` by default.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence, Union

logger = logging.getLogger(__name__)

# One device ("cuda:0", "cpu") or a group of devices that one model replica spans.
Device = Union[str, list]
CUDA_INDEXED = re.compile(r"cuda:\d+")


class WorkerError(RuntimeError):
    """A worker process ended with a non-zero exit code."""


def _entry(value: Any) -> Any:
    """A string with ``+`` is a group; a list stays a group; anything else is returned as it is."""
    if isinstance(value, str) and "+" in value:
        return [d.strip() for d in value.split("+")]
    if isinstance(value, (list, tuple)):
        return [d.strip() if isinstance(d, str) else d for d in value]
    return value.strip() if isinstance(value, str) else value


def resolve_devices(spec: str | Sequence[Device]) -> list[Device]:
    """``"auto"`` -> every visible GPU (``["cpu"]`` when there is none); a string or list as given.

    ``"cuda:0+cuda:1,cuda:2+cuda:3"`` and ``[["cuda:0", "cuda:1"], ["cuda:2", "cuda:3"]]`` are two
    workers, each a group of two GPUs.
    """
    if spec == "auto":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    if isinstance(spec, str):
        return [_entry(d) for d in spec.split(",") if d.strip()]
    return [_entry(d) for d in spec]


def is_group(device: Device) -> bool:
    return isinstance(device, (list, tuple))


def primary_device(device: Device) -> str:
    """The device a worker's inputs go to: the device itself, or a group's first device."""
    return device[0] if is_group(device) else device


def device_label(device: Device) -> str:
    return "+".join(device) if is_group(device) else str(device)


def _is_device(name: Any) -> bool:
    return isinstance(name, str) and (name in ("cpu", "cuda", "mps") or bool(CUDA_INDEXED.fullmatch(name)))


def device_problems(spec: Any, where: str, groups: bool = True, present: bool = True) -> list[str]:
    """Every problem with a ``devices`` setting. ``groups``: whether a worker may span a device group;
    ``present``: also whether this machine has the named devices (``missing_device_problems``)."""
    if spec == "auto":
        return []
    devices = resolve_devices(spec) if isinstance(spec, (str, list)) else None
    if not devices:
        return [f"{where}: expected 'auto', a device like 'cuda:0', or a list of them; got {spec!r}"]
    problems, owner = [], {}
    for i, device in enumerate(devices):
        if not is_group(device):
            if not _is_device(device):
                problems.append(f"{where}: {device!r} is not a device (cpu, cuda, cuda:N, mps)")
            continue
        label = f"{where}[{i}]"
        if not groups:
            problems.append(f"{label}: {device!r} is a device group; groups are for the judge (reward_model.devices), "
                            "an editor too big for its GPU uses offload: model or sequential")
            continue
        bad = [d for d in device if not _is_device(d)]
        if bad or not device:
            problems.extend(f"{label}: {d!r} is not a device (cpu, cuda:N)" for d in bad)
            if not device:
                problems.append(f"{label}: an empty device group")
            continue
        if device != ["cpu"] and not all(CUDA_INDEXED.fullmatch(d) for d in device):
            problems.append(f"{label}: a group is ['cpu'] or GPUs named with their index (cuda:0, cuda:1, ...); "
                            f"got {device!r}")
            continue
        if len(set(device)) != len(device):
            problems.append(f"{label}: {device!r} names a GPU twice")
        for d in dict.fromkeys(device):
            if d.startswith("cuda:"):
                if d in owner:
                    problems.append(f"{label}: {d} is also in {where}[{owner[d]}]; replicas of a group cannot share "
                                    "a GPU")
                owner[d] = i
    for i, device in enumerate(devices):  # a GPU in a group cannot also be a single-device worker
        if not is_group(device) and device in owner:
            problems.append(f"{where}[{i}]: {device} is also in the group {where}[{owner[device]}]")
    if problems or not present:
        return problems
    return missing_device_problems([d for device in devices for d in (device if is_group(device) else [device])],
                                   where)


def missing_device_problems(devices: list[str], where: str) -> list[str]:
    """Named devices this machine lacks. torch is imported only when a cuda or mps device is named, and
    ``torch.cuda.device_count()`` asks the driver (NVML where available) without creating a CUDA context."""
    if all(d == "cpu" for d in devices):
        return []
    import torch

    problems = []
    cuda = [d for d in devices if d.startswith("cuda")]
    if cuda:
        count = torch.cuda.device_count()
        have = f"this machine has {count} CUDA device(s)" if count else "this machine has no CUDA device"
        for d in dict.fromkeys(cuda):
            index = int(d[5:]) if d.startswith("cuda:") else 0
            if index >= count:
                problems.append(f"{where}: {d} does not exist ({have}; use cpu or auto)")
    if "mps" in devices and not torch.backends.mps.is_available():
        problems.append(f"{where}: mps is not available on this machine (use cpu or auto)")
    return problems


def bind_device(device: Device) -> int | None:
    """Make the worker's GPU (a group's first) the current CUDA device; returns its index, or None.

    Without it every worker's bare ``cuda`` tensors, ``torch.cuda.synchronize()`` and library
    defaults (diffusers' offload, accelerate) go to ``cuda:0``, where each worker would also
    create a CUDA context. Call it first thing in a worker process.
    """
    name = primary_device(device)
    if not isinstance(name, str) or not CUDA_INDEXED.fullmatch(name):
        return None
    import torch

    index = int(name.split(":")[1])
    torch.cuda.set_device(index)
    logger.debug("current CUDA device: cuda:%d", index)
    return index


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Rank-strided: rank r takes items r, r + world, r + 2*world, ..."""
    return list(items[rank::world_size])


@dataclass(frozen=True)
class Launch:
    """This process's place when started by torchrun / accelerate launch."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls) -> "Launch | None":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))

    def device(self, devices: list[Device]) -> Device:
        """This rank's device: ``devices[LOCAL_RANK]`` when the list is long enough, else cycled.

        Groups are never cycled: two ranks on one group would each load a full replica onto it.
        """
        if self.local_rank >= len(devices) and any(is_group(d) for d in devices):
            raise ValueError(f"local rank {self.local_rank} has no device group: {len(devices)} group(s) are configured "
                             "for this node; start one process per group")
        return devices[self.local_rank % len(devices)]

    def init(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            # Stages can run for hours between barriers.
            dist.init_process_group("gloo", timeout=timedelta(hours=48))

    @staticmethod
    def barrier() -> None:
        import torch.distributed as dist

        dist.barrier()

    @staticmethod
    def close() -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _set_threads(n_workers: int, device: Device) -> None:
    """Several CPU workers on one machine share its cores instead of oversubscribing them.

    An explicit ``OMP_NUM_THREADS`` wins. CPU kernels (oneDNN convolutions, GEMMs) split their sums
    by thread count, so CPU results are bit-identical across worker counts only at a fixed thread
    count: set ``OMP_NUM_THREADS`` to compare a one-worker and a many-worker CPU run exactly.
    """
    if primary_device(device).startswith("cpu") and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))


def _worker_main(target: Callable, kwargs: dict, log_level: int, n_workers: int, progress_queue=None) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s [rank %(rank)s] %(name)s: %(message)s",
                        force=True)
    from .redaction import install_log_redaction

    install_log_redaction()
    rank = kwargs["rank"]
    old_factory = logging.getLogRecordFactory()

    def factory(*args, **kw):
        record = old_factory(*args, **kw)
        record.rank = rank
        return record

    logging.setLogRecordFactory(factory)
    bind_device(kwargs["device"])  # before anything touches CUDA
    from . import progress

    progress.attach(progress_queue, forward_logs=True, rank=rank)  # bar updates and log lines go to the parent
    _set_threads(n_workers, kwargs["device"])
    target(**kwargs)


def run_workers(target: Callable, devices: list[Device], progress_queue=None, **kwargs) -> None:
    """Run ``target(rank=r, world_size=n, device=devices[r], **kwargs)`` once per device (or group).

    One device runs in this process; several run in spawned processes (CUDA-safe) and all must
    exit cleanly, else WorkerError names the ranks that did not. Each worker's GPU is made the
    current CUDA device before ``target`` runs. ``progress_queue``
    (``editjudge.progress.StageProgress.queue``): where spawned workers report progress and log records.
    """
    n = len(devices)
    if n == 1:
        bind_device(devices[0])
        target(rank=0, world_size=1, device=devices[0], **kwargs)
        return
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    processes = []
    for rank, device in enumerate(devices):
        worker_kwargs = dict(kwargs, rank=rank, world_size=n, device=device)
        process = context.Process(target=_worker_main, args=(target, worker_kwargs, level, n, progress_queue),
                                  name=f"editjudge-rank{rank}")
        process.start()
        processes.append(process)
    for process in processes:
        process.join()
    failed = [(rank, p.exitcode) for rank, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        raise WorkerError("worker(s) failed: " + ", ".join(f"rank {r} exit code {c}" for r, c in failed)
                          + "; finished work is kept, rerun the same command to resume")
