"""Dynamic batching: items from concurrent requests merged into judge batches.

Request handlers put their decoded items on one bounded ``BatchQueue``; each judge replica has a
thread that takes up to ``batch_size`` items, waiting at most ``max_wait`` seconds after the
oldest item arrived for the batch to fill, scores them with ``editjudge.models.reward.judge.judge_items``
(the score stage's own code, so every judge backend and rubric behaves as in a job) and hands
each item its result. A large request is simply many items: it spreads over several batches.
A batch whose judge call raises is scored again item by item, so one bad item fails alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..parallel import device_label
from ..redaction import redact
from .health import PROBE_INTERVAL, ReplicaHealth
from .metrics import Metrics

logger = logging.getLogger(__name__)


class ShuttingDown(RuntimeError):
    """The server stopped before this item was scored."""


@dataclass
class Job:
    """One item waiting for the judge; ``done`` receives its score fields or an exception."""

    edited: Any
    source: Any
    instruction: str
    done: Callable[[dict | BaseException], None]
    pixels: int = 0  # of its decoded images, counted against the queue's pixel capacity
    enqueued: float = field(default_factory=time.monotonic)


class BatchQueue:
    """A FIFO of jobs bounded in items and in decoded pixels.

    A request first ``reserve``s room for all of its items, from the image headers' sizes before any
    image is decoded, then ``put``s them; one that does not fit whole is refused. The room stays
    held until a judge thread takes the jobs, so the images decoded for waiting items never
    exceed ``pixel_capacity``.
    """

    def __init__(self, capacity: int, pixel_capacity: int) -> None:
        self.capacity, self.pixel_capacity = capacity, pixel_capacity
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._held_items = 0  # reserved or waiting
        self._held_pixels = 0

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def held_items(self) -> int:
        return self._held_items

    @property
    def held_pixels(self) -> int:
        return self._held_pixels

    def reserve(self, items: int, pixels: int) -> bool:
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            if self._held_items + items > self.capacity or self._held_pixels + pixels > self.pixel_capacity:
                return False
            self._held_items += items
            self._held_pixels += pixels
            return True

    def release(self, items: int, pixels: int) -> None:
        """Give back a reservation that will not be put (its request failed)."""
        with self._cond:
            self._held_items -= items
            self._held_pixels -= pixels

    def put(self, jobs: list[Job]) -> None:
        """Queue jobs whose room was reserved (``reserve(len(jobs), sum of their pixels)``)."""
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            self._jobs.extend(jobs)
            self._cond.notify_all()

    def cancel(self, jobs: list[Job]) -> int:
        """Drop those of ``jobs`` still waiting (their request is gone); how many were dropped."""
        ids = {id(job) for job in jobs}
        with self._cond:
            kept = deque(job for job in self._jobs if id(job) not in ids)
            dropped = [job for job in self._jobs if id(job) in ids]
            self._jobs = kept
            self._held_items -= len(dropped)
            self._held_pixels -= sum(job.pixels for job in dropped)
            return len(dropped)

    def take(self, max_items: int, max_wait: float, idle: float | None = None) -> list[Job] | None:
        """Up to ``max_items`` jobs, once full or ``max_wait`` after the oldest arrived; None once closed;
        [] when no job came for ``idle`` seconds."""
        with self._cond:
            while True:
                while not self._jobs and not self._closed:
                    if not self._cond.wait(idle) and idle is not None and not self._jobs:
                        return []
                if self._closed:
                    return None
                deadline = self._jobs[0].enqueued + max_wait
                while 0 < len(self._jobs) < max_items and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed:
                    return None
                if self._jobs:  # another replica may have taken them meanwhile
                    batch = [self._jobs.popleft() for _ in range(min(max_items, len(self._jobs)))]
                    self._held_items -= len(batch)
                    self._held_pixels -= sum(job.pixels for job in batch)
                    return batch

    def wait_closed(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the queue to close; whether it is closed."""
        with self._cond:
            if not self._closed:
                self._cond.wait(seconds)
            return self._closed

    def close(self) -> list[Job]:
        """Stop handing out jobs; returns the ones still waiting (the caller fails them)."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._held_items = self._held_pixels = 0
            self._cond.notify_all()
            return left


def _error_text(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")


def score_batch(model, rubric, images: list, instructions: list[str], sources: list) -> list[dict]:
    """``judge_items`` on a replica here, or in its own process (``editjudge.serve.replica``)."""
    from ..models.reward.judge import judge_items
    from .replica import ReplicaProcess

    if isinstance(model, ReplicaProcess):
        return model.judge(images, instructions, sources)
    return judge_items(model, rubric, images, instructions, sources)


class JudgeWorker(threading.Thread):
    """One judge replica's loop: take a batch, score it, deliver the results."""

    def __init__(self, model, rubric, queue: BatchQueue, batch_size: int, max_wait: float, metrics: Metrics,
                 name: str, replica: str = "0", with_source: bool = False,
                 others_healthy: Callable[[], bool] = lambda: False) -> None:
        super().__init__(name=name, daemon=True)
        self.others_healthy = others_healthy
        self.replica, self.with_source = replica, with_source
        self.health = ReplicaHealth(name)
        self.busy = False  # scoring a batch (sleep waits for it)
        self.model, self.rubric, self.queue = model, rubric, queue
        self.batch_size, self.max_wait, self.metrics = batch_size, max_wait, metrics

    def run(self) -> None:
        while True:
            if self.health.problem is not None and self.others_healthy():
                # A replica that cannot score (its process died, a sticky CUDA error) leaves the queue to
                # the healthy ones and is probed every PROBE_INTERVAL; when none is healthy, all take
                # batches, so that waiting items fail at once with the reason.
                if self.queue.wait_closed(PROBE_INTERVAL):
                    return
                self.health.idle(self.model, self.rubric, self.with_source)
                continue
            jobs = self.queue.take(self.batch_size, self.max_wait, idle=PROBE_INTERVAL)
            if jobs is None:
                return
            if not jobs:
                self.health.idle(self.model, self.rubric, self.with_source)
                continue
            self.busy = True
            started = time.perf_counter()
            results = self.score(jobs)
            seconds = time.perf_counter() - started
            self.metrics.batch(len(jobs), sum(1 for r in results if r.get("error")), seconds, self.replica)
            self.metrics.alarms.observe_items([r.get("score") if not r.get("error") else None for r in results])
            logger.debug("%s: batch of %d in %.3f s", self.name, len(jobs), seconds)
            for job, result in zip(jobs, results):
                job.done(result)
            self.busy = False
            self.health.after_batch(self.model, self.rubric, self.with_source, results)

    def score(self, jobs: list[Job]) -> list[dict]:
        try:
            results = score_batch(self.model, self.rubric, [j.edited for j in jobs], [j.instruction for j in jobs],
                                  [j.source for j in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"the judge returned {len(results)} results for {len(jobs)} items")
            return results
        except Exception as exc:  # noqa: BLE001 - recorded per item, never a made-up score
            if len(jobs) == 1:
                logger.exception("%s: the judge raised on one item", self.name)
                return [{"score": None, "raw_output": None, "error": f"judge error: {_error_text(exc)}"}]
            logger.warning("%s: the judge raised on a batch of %d (%s); scoring its items one by one",
                           self.name, len(jobs), _error_text(exc))
            return [self.score([job])[0] for job in jobs]


class Judges:
    """The judge replicas (one per device or device group, loaded on a background thread) and their shared queue."""

    def __init__(self, build: Callable[[str], Any], rubric, devices: list[str], queue: BatchQueue,
                 batch_size: int, max_wait: float, metrics: Metrics,
                 with_source: Callable[[Any], bool] = lambda model: False) -> None:
        self.build, self.rubric, self.devices, self.with_source = build, rubric, devices, with_source
        self.queue, self.batch_size, self.max_wait, self.metrics = queue, batch_size, max_wait, metrics
        self.state = "loading"  # -> ready | failed | stopped; ready <-> sleeping -> asleep -> waking -> ready
        self.sleep_level: int | None = None
        self.error: str | None = None
        self.models: list = []
        self.workers: list[JudgeWorker] = []
        self._loader: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def unhealthy(self) -> str | None:
        """Why no replica can score (each failed its probe), or None."""
        problems = [w.health.problem for w in self.workers]
        if self.ready and problems and all(problems):
            return problems[0]
        return None

    def start(self, on_failure: Callable[[], None]) -> None:
        self._loader = threading.Thread(target=self._load, args=(on_failure,), name="judge-loader", daemon=True)
        self._loader.start()

    def _load(self, on_failure: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            for device in self.devices:
                self.models.append(self.build(device))
            sources = [self.with_source(model) for model in self.models]  # replica processes load meanwhile
        except Exception as exc:  # noqa: BLE001 - the server cannot serve without its judge: it stops
            self.state, self.error = "failed", _error_text(exc)
            logger.exception("the judge failed to load; the server stops")
            self._close_models()
            on_failure()
            return
        if self.state != "loading":  # stopped while loading
            self._close_models()
            return
        for i, model in enumerate(self.models):
            worker = JudgeWorker(model, self.rubric, self.queue, self.batch_size, self.max_wait, self.metrics,
                                 name=f"judge-{i}-{device_label(self.devices[i])}", replica=str(i),
                                 with_source=sources[i],
                                 others_healthy=lambda me=i: any(w.health.problem is None for j, w in
                                                                 enumerate(self.workers) if j != me))
            worker.start()
            self.workers.append(worker)
        self.state = "ready"
        if not logger.isEnabledFor(logging.DEBUG):  # the judge's lines per batch, at the server's rate, are noise
            logging.getLogger("editjudge.models.reward").setLevel(logging.WARNING)
        logger.info("judge ready: %d replica(s) on %s, loaded in %.1f s; batches of up to %d items, waiting up to "
                    "%.0f ms", len(self.models), ", ".join(device_label(d) for d in self.devices), time.perf_counter() - started,
                    self.batch_size, self.max_wait * 1000)
        # The loader thread lives as long as the judge: a backend process it started (the vLLM judge's
        # server) is bound to it by PR_SET_PDEATHSIG, which fires when the *thread* that forked exits.
        self._stopping.wait()

    def sleep(self, level: int, drain_timeout: float = 300.0) -> dict:
        """Refuse new work, let the queued items be scored, then free every replica's accelerator memory."""
        from .sleep import sleep_model

        if self.state == "asleep":
            return {"status": "asleep", "level": self.sleep_level, "seconds": 0.0}
        if self.state != "ready":
            raise RuntimeError(f"the judge is {self.state}")
        started = time.perf_counter()
        self.state = "sleeping"
        try:
            deadline = time.monotonic() + drain_timeout
            while self.queue.held_items or any(w.busy for w in self.workers):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the queue did not drain within {drain_timeout:g} s")
                time.sleep(0.02)
            how = {sleep_model(model, level) for model in self.models}
        except BaseException:
            self.state = "ready"
            raise
        self.state, self.sleep_level = "asleep", level
        seconds = time.perf_counter() - started
        logger.info("judge asleep (level %d, %s) in %.2f s", level, ", ".join(sorted(how)), seconds)
        return {"status": "asleep", "level": level, "seconds": seconds}

    def wake(self) -> dict:
        from .sleep import wake_model

        if self.state == "ready":
            return {"status": "ready", "seconds": 0.0}
        if self.state != "asleep":
            raise RuntimeError(f"the judge is {self.state}")
        started = time.perf_counter()
        self.state = "waking"
        try:
            for model in self.models:
                wake_model(model)
        except BaseException:
            self.state = "asleep"
            raise
        self.state, self.sleep_level = "ready", None
        seconds = time.perf_counter() - started
        logger.info("judge awake in %.2f s", seconds)
        return {"status": "ready", "seconds": seconds}

    def stop(self) -> None:
        """Stop taking batches, fail what still waits, let the running batches finish."""
        if self.state in ("loading", "ready", "sleeping", "asleep", "waking"):
            self.state = "stopped"
        self._stopping.set()
        left = self.queue.close()
        for job in left:
            job.done(ShuttingDown("the server stopped before this item was scored"))
        for worker in self.workers:
            worker.join(timeout=30)
        self._close_models()

    def _close_models(self) -> None:
        for model in self.models:
            close = getattr(model, "close", None)
            if callable(close):
                close()
