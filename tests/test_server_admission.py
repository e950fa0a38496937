"""Admission before work, cancellation, idempotent retries and sleep/wake, on one real server process
(the tiny judge, one body read at a time)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from editjudge.client import RewardClient
from tests.test_server import Server, http, image


@pytest.fixture(scope="module")
def one_body_server(tmp_path_factory, judge_path):
    tmp = tmp_path_factory.mktemp("admission")
    srv = Server(tmp, {"model_path": judge_path, "max_new_tokens": 12, "batch_size": 4},
                 ["--max-bodies", "1", "--max-wait-ms", "5", "--body-timeout", "30"])
    yield srv
    srv.stop()


def _open_upload(port: int, length: int) -> socket.socket:
    """A request whose headers are sent and whose body is not (yet): it holds its body slot."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n{" % length)
    return sock


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def test_a_body_beyond_the_admission_bound_is_refused_unread_and_health_stays_fast(one_body_server):
    srv = one_body_server
    holder = _open_upload(srv.port, 50_000_000)
    try:
        time.sleep(0.3)
        assert srv.metrics()["editjudge_bodies_in_flight"] == 1
        # The second body is refused from its headers: nothing of it is sent, yet the answer comes.
        second = _open_upload(srv.port, 40_000_000)
        began = time.perf_counter()
        answer = second.recv(65536)
        refused_in = time.perf_counter() - began
        second.close()
        assert _status(answer) == 503 and b"retry-after: 1" in answer.lower() and b'"busy"' in answer
        assert refused_in < 5
        began = time.perf_counter()
        status, body = http("GET", srv.url + "/health")
        assert status == 200 and body["admission"]["bodies"] == 1 and time.perf_counter() - began < 1
    finally:
        holder.close()
    deadline = time.monotonic() + 10
    while srv.metrics()["editjudge_bodies_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the holder's disconnect frees its slot
    results = RewardClient(srv.url, retries=0).score([image(7)], None, "x")
    assert results[0].score is not None
    assert srv.metrics()["editjudge_bodies_refused_total"] == 1
