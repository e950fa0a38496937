"""One process per judge replica (``editjudge.serve.replica``): two transformers replicas of the tiny
judge each in an interpreter of its own, scoring what the judge scores in this process, and a replica
whose process is killed left out of the queue while the other serves."""

from __future__ import annotations

import os
import signal
import time

import pytest

from editjudge.client import RewardClient
from editjudge.config import RewardModelConfig
from editjudge.models.reward.judge import build_judge, judge_items
from tests.test_server import Server, http, image

PARAMS = {"max_new_tokens": 12, "batch_size": 4}


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory, judge_path):
    srv = Server(tmp_path_factory.mktemp("replicas"), {"model_path": judge_path, **PARAMS},
                 ["--devices", "cpu,cpu", "--max-wait-ms", "5"])
    yield srv
    srv.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_each_replica_scores_in_its_own_process_as_the_judge_does_here(two_replicas, judge_path):
    srv = two_replicas
    status, health = http("GET", srv.url + "/health")
    pids = health["replica_pids"]
    assert status == 200 and health["replicas"] == 2 and len(set(pids)) == 2
    assert srv.proc.pid not in pids and all(_alive(pid) for pid in pids)
    for pid in pids:  # children of the server, running the replica module
        assert open(f"/proc/{pid}/stat").read().split(") ")[1].split()[1] == str(srv.proc.pid)
        assert "editjudge.serve.replica" in open(f"/proc/{pid}/cmdline").read()
    images = [image(level, seed=i) for i, level in enumerate([0, 3, 5, 7, 9, 10, 2, 8] * 3)]
    before = {r: n for r, n in srv.metrics().items() if r.startswith("editjudge_replica_batches_total")}
    served = RewardClient(srv.url, retries=0).score(images, None, "brighten the image")
    judge, rubric = build_judge(RewardModelConfig(type="qwen3_vl", devices="cpu",
                                                  params={"model_path": judge_path, **PARAMS}), "cpu", quiet=True)
    here = judge_items(judge, rubric, images, ["brighten the image"] * len(images), [None] * len(images))
    assert [(r.score, r.raw_output, r.error) for r in served] == [(h["score"], h["raw_output"], h["error"])
                                                                  for h in here]
    assert None not in [r.score for r in served]
    after = srv.metrics()
    assert sum(after[k] - before.get(k, 0) for k in after if k.startswith("editjudge_replica_batches_total")) >= 6


def test_a_killed_replica_leaves_the_queue_to_the_other(two_replicas):
    srv = two_replicas
    _, health = http("GET", srv.url + "/health")
    dead, living = health["replica_pids"]
    os.kill(dead, signal.SIGKILL)
    client = RewardClient(srv.url, retries=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the dead replica may take one batch before its probe says why
        results = client.score([image(level, seed=9) for level in range(8)], None, "x")
        _, health = http("GET", srv.url + "/health")
        if health["replica_problems"][0]:
            break
    assert "is gone" in health["replica_problems"][0] or "exited" in health["replica_problems"][0]
    assert health["status"] == "ready" and health["replica_problems"][1] is None and _alive(living)
    for _ in range(3):  # the healthy replica takes every batch now
        results = client.score([image(level, seed=3) for level in range(8)], None, "x")
        assert all(r.score is not None for r in results), [r.error for r in results]
    assert "cannot score" in srv.log.read_text()


def test_a_loaded_replica_says_what_it_needs_while_it_scores():
    """``compare_with_original`` is asked on the server's event loop for every request and /health: it must
    not wait for the lock a scoring batch holds (seconds on a real judge)."""
    import threading

    from editjudge.serve.replica import ReplicaProcess

    replica = ReplicaProcess.__new__(ReplicaProcess)  # its process's part is not needed for this
    replica._lock, replica._hello = threading.Lock(), {"pid": 1, "compare_with_original": True}
    answers = []
    with replica._lock:  # a batch being scored
        asking = threading.Thread(target=lambda: answers.append(replica.compare_with_original), daemon=True)
        asking.start()
        asking.join(timeout=5)
    assert answers == [True]
