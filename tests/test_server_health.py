"""The reward server tells when its judge cannot score, and raises alarms on degenerate rewards.

The judge is the vLLM judge on a stand-in vLLM server (``tests/fake_vllm.py``: a real process the
judge starts, which answers every item 5): its answers are constant (an alarm), and killing that
process is a real backend death, after which ``/health`` must say 503, not 200 with every item failed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from editjudge.client import RewardClient
from tests.fake_vllm import fake_python
from tests.test_server import Server, http, image


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("health")
    config = tmp / "serve.yaml"
    config.write_text(yaml.safe_dump({"reward_model": {"type": "vllm", "params": {
        "model_path": "tiny/judge", "python": fake_python(tmp, tmp / "fake.jsonl"), "ready_timeout": 60,
        "max_retries": 0, "output_dir": str(tmp / "out")}}}))
    srv = Server(tmp, {}, ["--max-wait-ms", "5"], config=config)
    yield srv
    srv.stop()


def test_constant_scores_raise_an_alarm_and_a_dead_backend_turns_health_503(vllm_server):
    client = RewardClient(vllm_server.url, timeout=60, retries=0)
    results = client.score([image(i % 11, seed=i) for i in range(40)], [image(5, seed=i) for i in range(40)], "x")
    assert [r.score for r in results] == [5.0] * 40
    metrics = vllm_server.metrics()
    assert metrics['editjudge_reward_alarm{alarm="constant_scores"}'] == 1
    assert metrics['editjudge_reward_alarm{alarm="failure_rate"}'] == 0
    assert "reward alarm constant_scores: the last 32 scores are all 5.0" in vllm_server.log.read_text()
    assert http("GET", vllm_server.url + "/health")[0] == 200

    backend = [pid for pid in _children(vllm_server.proc.pid)
               if "fake_vllm" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(backend) == 1
    os.kill(backend[0], signal.SIGKILL)
    results = client.score([image(3, seed=100 + i) for i in range(4)], [image(5)] * 4, "x")
    assert all(r.score is None and r.error for r in results)
    deadline, status = time.monotonic() + 20, 200
    while time.monotonic() < deadline and status == 200:
        status, body = http("GET", vllm_server.url + "/health")
        time.sleep(0.1)
    assert status == 503 and body["status"] == "unhealthy" and "exited" in body["error"], body
    status, body = http("POST", vllm_server.url + "/v1/score",
                        RewardClient.build_payload([image(2)], [image(5)], "x"))
    assert status == 503 and body["error"]["code"] == "judge_unavailable"
    assert {k.lower(): v for k, v in body["_headers"].items()}["retry-after"] == "5"
    assert "cannot score (a probe item failed too)" in vllm_server.log.read_text()


def test_groups_with_zero_spread_and_a_high_failure_rate_raise_alarms(caplog):
    from editjudge.serve.alarms import Alarms

    alarms = Alarms()
    for _ in range(7):
        alarms.observe_group(0.0, 4)
    alarms.observe_group(None, 4)  # an incomplete group says nothing about spread
    alarms.observe_group(0.0, 1)  # nor does a group of one
    assert not alarms.raised["zero_spread_groups"]
    with caplog.at_level("WARNING", logger="editjudge.serve.alarms"):
        alarms.observe_group(0.0, 4)
    assert alarms.raised["zero_spread_groups"] and "8 groups have zero spread" in caplog.text
    for _ in range(9):
        alarms.observe_group(1.5, 4)
    assert not alarms.raised["zero_spread_groups"]  # 8 of 17: no longer over half
    alarms.observe_items([None] * 20 + [3.0, 4.0] * 6)
    assert alarms.raised["failure_rate"] and 'editjudge_reward_alarm{alarm="failure_rate"} 1' in alarms.lines()
    alarms.observe_items([3.0, 4.0] * 10)
    assert not alarms.raised["failure_rate"] and not alarms.raised["constant_scores"]
