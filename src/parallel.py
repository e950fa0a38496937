"""One process per device: device lists, rank-strided shards, and the two ways to get workers.

* Local: the parent starts one spawned worker per entry of ``devices`` and waits for them.
* Launched: under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment)
  every process is already a worker; it takes rank ``RANK`` and device ``LOCAL_RANK``, and the
  ranks meet at barriers (a gloo process group, CPU only, so it works with or without GPUs).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """A worker process ended with a non-zero exit code."""


def resolve_devices(spec: str | Sequence[str]) -> list[str]:
    """``"auto"`` -> every visible GPU (``["cpu"]`` when there is none); a string or list as given."""
    if spec == "auto":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    if isinstance(spec, str):
        return [d.strip() for d in spec.split(",") if d.strip()]
    return list(spec)


def device_problems(spec: Any, where: str, present: bool = True) -> list[str]:
    """What is wrong with a devices setting; ``present``: also whether this machine has them."""
    if spec == "auto":
        return []
    devices = resolve_devices(spec) if isinstance(spec, (str, list)) else None
    if not devices:
        return [f"{where}: expected 'auto', a device like 'cuda:0', or a list of them; got {spec!r}"]
    bad = [d for d in devices if not isinstance(d, str) or not (d == "cpu" or d == "cuda" or d.startswith("cuda:")
                                                               and d[5:].isdigit() or d == "mps")]
    if bad:
        return [f"{where}: {d!r} is not a device (cpu, cuda, cuda:N, mps)" for d in bad]
    return missing_device_problems(devices, where) if present else []


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

    def device(self, devices: list[str]) -> str:
        """This rank's device: ``devices[LOCAL_RANK]`` when the list is long enough, else cycled."""
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


def _set_threads(n_workers: int, device: str) -> None:
    """Several CPU workers on one machine share its cores instead of oversubscribing them.

    An explicit ``OMP_NUM_THREADS`` wins. CPU kernels (oneDNN convolutions, GEMMs) split their sums
    by thread count, so CPU results are bit-identical across worker counts only at a fixed thread
    count: set ``OMP_NUM_THREADS`` to compare a one-worker and a many-worker CPU run exactly.
    """
    if device.startswith("cpu") and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))


def _worker_main(target: Callable, kwargs: dict, log_level: int, n_workers: int, progress_queue=None) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s [rank %(rank)s] %(name)s: %(message)s",
                        force=True)
    rank = kwargs["rank"]
    old_factory = logging.getLogRecordFactory()

    def factory(*args, **kw):
        record = old_factory(*args, **kw)
        record.rank = rank
        return record

    logging.setLogRecordFactory(factory)
    from . import progress

    progress.attach(progress_queue, forward_logs=True, rank=rank)  # bar updates and log lines go to the parent
    _set_threads(n_workers, kwargs["device"])
    target(**kwargs)


def run_workers(target: Callable, devices: list[str], progress_queue=None, **kwargs) -> None:
    """Run ``target(rank=r, world_size=n, device=devices[r], **kwargs)`` once per device.

    One device runs in this process; several run in spawned processes (CUDA-safe) and all must
    exit cleanly, else WorkerError names the ranks that did not. ``progress_queue``
    (``editjudge.progress.StageProgress.queue``): where spawned workers report progress and log records.
    """
    n = len(devices)
    if n == 1:
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
