"""Admission before work, cancellation, idempotent retries and sleep/wake, on one real server process
(the tiny judge, one body read at a time)."""

from __future__ import annotations

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


def _answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer (headers and a Content-Length body)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_body_beyond_the_admission_bound_is_refused_unread_and_health_stays_fast(one_body_server):
    srv = one_body_server
    holder = _open_upload(srv.port, 50_000_000)
    try:
        time.sleep(0.3)
        assert srv.metrics()["editjudge_bodies_in_flight"] == 1
        # The second body is refused from its headers: nothing of it is sent, yet the answer comes.
        second = _open_upload(srv.port, 40_000_000)
        began = time.perf_counter()
        answer = _answer(second)
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


def test_a_client_uploading_a_refused_body_reads_the_refusal_not_a_reset(one_body_server):
    """urllib (as requests) writes its whole body before reading: refused before its body is read, it
    must still read the 503 and its Retry-After, not a reset connection (which retries blind)."""
    srv = one_body_server
    holder = _open_upload(srv.port, 50_000_000)
    try:
        time.sleep(0.3)
        body = b'{"version": 2, "items": [], "pad": "' + b"x" * 8_000_000 + b'"}'  # more than socket buffers hold
        for _ in range(3):
            status, answer = http("POST", srv.url + "/v1/score", body, timeout=30)
            assert status == 503 and answer["error"]["code"] == "busy" and answer["_headers"]["retry-after"] == "1"
    finally:
        holder.close()


def _payload(n: int, seed: int) -> dict:
    return RewardClient.build_payload([image((seed + i) % 11, seed=seed + i) for i in range(n)], None, "x")


def _timed_out(url: str, payload: dict, timeout: float, headers: dict | None = None) -> bool:
    try:
        status, _ = http("POST", url + "/v1/score", payload, headers=headers, timeout=timeout)
    except TimeoutError:
        return True
    return status == 0  # urllib's URLError wrapping the timeout


def _wait_idle(srv, limit: float = 60.0) -> dict:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        metrics = srv.metrics()
        if metrics["editjudge_queue_depth"] == 0:
            time.sleep(0.5)  # a batch taken just before may still be scoring
            return srv.metrics()
        time.sleep(0.1)
    raise AssertionError("the queue did not drain")


def test_a_client_that_times_out_cancels_its_waiting_items(one_body_server):
    srv = one_body_server
    before = _wait_idle(srv)
    # 500 items (the limit is 512 a request) keep the tiny judge busy for seconds, far past the client's 0.5 s.
    assert _timed_out(srv.url, _payload(500, 1), 0.5)
    after = _wait_idle(srv)
    cancelled = after["editjudge_items_cancelled_total"] - before["editjudge_items_cancelled_total"]
    scored = after["editjudge_items_total"] - before["editjudge_items_total"]
    assert cancelled > 0 and scored + cancelled == 500, (scored, cancelled)
    assert "went away before its answer; its waiting items are cancelled" in srv.log.read_text()


def test_a_retried_request_with_its_idempotency_key_is_scored_once(one_body_server):
    srv = one_body_server
    payload = _payload(300, 20)  # seconds of work for the tiny judge, far past the first attempt's 0.2 s
    before = _wait_idle(srv)
    headers = {"Idempotency-Key": "retry-me-1"}
    assert _timed_out(srv.url, payload, 0.2, headers)  # the first attempt's work goes on for the retry
    answer = RewardClient(srv.url, retries=0).score_payload(payload, idempotency_key="retry-me-1")
    again = RewardClient(srv.url, retries=0).score_payload(payload, idempotency_key="retry-me-1")
    assert answer == again and all(r["score"] is not None for r in answer["results"])
    after = _wait_idle(srv)
    assert after["editjudge_items_total"] - before["editjudge_items_total"] == 300
    assert after["editjudge_idempotent_replays_total"] - before["editjudge_idempotent_replays_total"] == 2
    status, body = http("POST", srv.url + "/v1/score", _payload(1, 3), headers=headers)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"


def test_sleep_refuses_scoring_with_a_clear_503_and_wake_restores_the_same_judge(one_body_server):
    srv = one_body_server
    client = RewardClient(srv.url, retries=0)
    before = [r.score for r in client.score([image(2), image(9)], None, "x")]
    status, body = http("POST", srv.url + "/v1/sleep?level=1")
    assert status == 200 and body["status"] == "asleep" and body["level"] == 1
    assert http("POST", srv.url + "/v1/sleep?level=2")[1]["status"] == "asleep"  # already asleep: no change
    status, body = http("GET", srv.url + "/health")
    assert status == 503 and body["status"] == "asleep"
    status, body = http("POST", srv.url + "/v1/score", _payload(1, 0))
    assert status == 503 and body["error"]["code"] == "asleep" and "/v1/wake" in body["error"]["message"]
    assert http("POST", srv.url + "/v1/sleep?level=3")[0] == 422
    status, body = http("POST", srv.url + "/v1/wake")
    assert status == 200 and body["status"] == "ready" and body["seconds"] >= 0
    assert http("GET", srv.url + "/health")[0] == 200
    assert [r.score for r in client.score([image(2), image(9)], None, "x")] == before
    assert "judge asleep (level 1, offload)" in srv.log.read_text()
