"""The reward server's counters, rendered in Prometheus' text format (``GET /metrics``).

Written by hand (a few counters, gauges and histograms) rather than pulling in a client library;
every update takes one lock, so request handlers and judge threads can share it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

from .alarms import Alarms

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{_number(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{le="+Inf"}} {self.total}')
        out.append(f"{name}_sum {_number(self.sum)}")
        out.append(f"{name}_count {self.total}")
        return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """What ``/metrics`` shows. ``queue_depth`` and ``ready`` are read when the page is rendered."""

    def __init__(self, queue_depth: Callable[[], int], queue_capacity: int, ready: Callable[[], bool],
                 queue_pixels: Callable[[], int] = lambda: 0) -> None:
        self._lock = threading.Lock()
        self._queue_depth = queue_depth
        self._queue_pixels = queue_pixels
        self._queue_capacity = queue_capacity
        self._ready = ready
        self.requests: dict[str, int] = defaultdict(int)  # by HTTP status
        self.items = 0
        self.item_failures = 0
        self.batch_size = _Histogram(BATCH_BUCKETS)
        self.batch_seconds = _Histogram(LATENCY_BUCKETS)
        self.request_seconds = _Histogram(LATENCY_BUCKETS)
        self.largest_batch = 0
        self.replica_batches: dict[str, int] = defaultdict(int)
        self._throughput: float | None = None  # items/s over recent batches, for Retry-After
        self.alarms = Alarms()
        self.admission = None
        self.replays = None  # the app's Replays: answers given again for a retried Idempotency-Key
        self.items_cancelled = 0  # the app's Admission: bodies being read and decoded
        self.group_counts: dict[str, int] = {}  # version 2 groups by how they ended (the GroupTable's own dict)

    def request(self, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[str(status)] += 1
            self.request_seconds.observe(seconds)

    def batch(self, size: int, failures: int, seconds: float, replica: str = "0") -> None:
        with self._lock:
            self.replica_batches[replica] += 1
            self.items += size
            self.item_failures += failures
            self.batch_size.observe(size)
            self.batch_seconds.observe(seconds)
            self.largest_batch = max(self.largest_batch, size)
            rate = size / seconds if seconds > 0 else None
            if rate is not None:
                self._throughput = rate if self._throughput is None else 0.8 * self._throughput + 0.2 * rate

    def cancelled(self, items: int) -> None:
        with self._lock:
            self.items_cancelled += items

    def seconds_to_drain(self, items: int) -> float | None:
        """How long ``items`` queued items take at the recent rate (None before the first batch)."""
        with self._lock:
            return None if not self._throughput else items / self._throughput

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP editjudge_ready 1 once the judge is loaded and scoring.",
                "# TYPE editjudge_ready gauge",
                f"editjudge_ready {int(self._ready())}",
                "# HELP editjudge_requests_total Score requests answered, by HTTP status.",
                "# TYPE editjudge_requests_total counter",
                *[f'editjudge_requests_total{{code="{code}"}} {n}' for code, n in sorted(self.requests.items())],
                "# HELP editjudge_items_total Items the judge scored (failed ones included).",
                "# TYPE editjudge_items_total counter",
                f"editjudge_items_total {self.items}",
                "# HELP editjudge_item_failures_total Items answered with an error instead of a score.",
                "# TYPE editjudge_item_failures_total counter",
                f"editjudge_item_failures_total {self.item_failures}",
                "# HELP editjudge_batch_size Items per judge batch (merged across requests).",
                "# TYPE editjudge_batch_size histogram",
                *self.batch_size.lines("editjudge_batch_size"),
                "# HELP editjudge_batch_size_max The largest judge batch so far.",
                "# TYPE editjudge_batch_size_max gauge",
                f"editjudge_batch_size_max {self.largest_batch}",
                "# HELP editjudge_replica_batches_total Judge batches each replica scored.",
                "# TYPE editjudge_replica_batches_total counter",
                *[f'editjudge_replica_batches_total{{replica="{r}"}} {n}'
                  for r, n in sorted(self.replica_batches.items())],
                "# HELP editjudge_batch_seconds Time the judge took per batch.",
                "# TYPE editjudge_batch_seconds histogram",
                *self.batch_seconds.lines("editjudge_batch_seconds"),
                "# HELP editjudge_request_seconds Time from receiving a score request to answering it.",
                "# TYPE editjudge_request_seconds histogram",
                *self.request_seconds.lines("editjudge_request_seconds"),
                "# HELP editjudge_queue_depth Items waiting for a judge batch.",
                "# TYPE editjudge_queue_depth gauge",
                f"editjudge_queue_depth {self._queue_depth()}",
                "# HELP editjudge_queue_pixels Decoded pixels held for waiting (and reserved) items.",
                "# TYPE editjudge_queue_pixels gauge",
                f"editjudge_queue_pixels {self._queue_pixels()}",
                "# HELP editjudge_queue_capacity Items the queue holds before answering 429.",
                "# TYPE editjudge_queue_capacity gauge",
                f"editjudge_queue_capacity {self._queue_capacity}",
                "# HELP editjudge_groups_total Version 2 groups by how they ended (complete, incomplete: deadline "
                "passed, failed: a member has no score; zero_spread: complete with every score equal).",
                "# TYPE editjudge_groups_total counter",
                *[f'editjudge_groups_total{{status="{k}"}} {n}' for k, n in sorted(self.group_counts.items())],
                *self.alarms.lines(),
            ]
            if self.admission is not None:
                lines += ["# HELP editjudge_bodies_in_flight Request bodies being read and decoded now.",
                          "# TYPE editjudge_bodies_in_flight gauge",
                          f"editjudge_bodies_in_flight {self.admission.bodies}",
                          "# HELP editjudge_bodies_refused_total Requests refused (503) before their body was read.",
                          "# TYPE editjudge_bodies_refused_total counter",
                          f"editjudge_bodies_refused_total {self.admission.refused}"]
            lines += ["# HELP editjudge_items_cancelled_total Waiting items dropped because their client went away.",
                      "# TYPE editjudge_items_cancelled_total counter",
                      f"editjudge_items_cancelled_total {self.items_cancelled}"]
            if self.replays is not None:
                lines += ["# HELP editjudge_idempotent_replays_total Retried requests answered without scoring again.",
                          "# TYPE editjudge_idempotent_replays_total counter",
                          f"editjudge_idempotent_replays_total {self.replays.replayed}"]
        return "\n".join(lines) + "\n"


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels} value`` lines as a dict (for tests and the benchmark); comments skipped."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
