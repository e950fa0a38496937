"""The reward server (``editjudge serve``) as a real process on 127.0.0.1 with the tiny judge.

Two server processes: one shared by most tests (token required, the source shown to the judge,
batches of up to 16 items), one small and slow (batch 1, a 32-item queue) for 429 and for being
killed mid-load. Both are stopped by PID.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from editjudge.client import RewardClient, RewardServerError, encode_image
from editjudge.serve.batcher import Job
from editjudge.serve.metrics import parse_metrics

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-5d41402abc"
MAX_ITEMS = 256
MAX_PIXELS = 100 * 100
MAX_BODY_MB = 4
MAX_QUEUE_PIXELS = 2_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python main.py serve`` in a subprocess; ``seen`` holds what /health and /v1/score said while it loaded."""

    def __init__(self, tmp: Path, params: dict, flags: list[str], token: str | None = None,
                 config: Path | None = None) -> None:
        """A server of a qwen3_vl judge with ``params``, or of the ``reward_model`` of the file ``config``."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if config is None:
            config = tmp / "serve.yaml"
            config.write_text(yaml.safe_dump({"reward_model": {"type": "qwen3_vl", "params": params}}))
        self.log = tmp / "server.log"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop("EDITJUDGE_SERVER_TOKEN", None)
        if token:
            env["EDITJUDGE_SERVER_TOKEN"] = token
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve", "--config", str(config),
                                          "--port", str(self.port), *flags], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.seen: list[tuple[str, int, str]] = []
        try:
            self._wait_ready(token)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, token: str | None, limit: float = 180.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            status, body = http("GET", self.url + "/health")
            if status == 200:
                self.seen.append(("health", 200, body["status"]))
                return
            if status == 503:
                self.seen.append(("health", 503, body["status"]))
                if not any(kind == "score" for kind, _, _ in self.seen):  # a score request while loading
                    s, b = http("POST", self.url + "/v1/score", {"items": [{"edited": "x", "instruction": "x"}]},
                                token=token)
                    self.seen.append(("score", s, (b.get("error") or {}).get("code", "")))
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {limit} s:\n{self.log.read_text()}")

    def metrics(self, token: str | None = None) -> dict[str, float]:
        status, text = http("GET", self.url + "/metrics", token=token, raw=True)
        assert status == 200, text
        return parse_metrics(text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def http(method: str, url: str, body=None, token: str | None = None, raw: bool = False, headers=None,
         timeout: float = 60):
    """(status, parsed JSON or text); (0, {}) when nothing answers."""
    data = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, payload, response_headers = exc.code, exc.read(), exc.headers
    except (urllib.error.URLError, ConnectionError):
        return 0, {}
    text = payload.decode()
    if raw:
        return status, text
    parsed = json.loads(text) if text else {}
    if isinstance(parsed, dict):
        parsed["_headers"] = dict(response_headers)
    return status, parsed


def image(level: int, size: tuple[int, int] = (48, 40), seed: int = 0) -> Image.Image:
    """A flat image of brightness ``level`` (the tiny judge answers the level) with a little noise."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(level * 25.5 + rng.normal(0, 4, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def b64(im: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    im.save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds almost no data: only a header check refuses it
    with 413; decoding it would fail as truncated (400)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def judge_params(judge_path) -> dict:
    return {"model_path": judge_path, "max_new_tokens": 12, "batch_size": 16, "compare_with_original": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory, judge_params):
    tmp = tmp_path_factory.mktemp("server")
    srv = Server(tmp, judge_params, ["--max-wait-ms", "50", "--max-items", str(MAX_ITEMS), "--max-queue", "1024",
                                     "--max-image-pixels", str(MAX_PIXELS), "--max-body-mb", str(MAX_BODY_MB),
                                     "--max-queue-pixels", str(MAX_QUEUE_PIXELS)],
                 token=TOKEN)
    yield srv
    srv.stop()
    # SIGTERM: uvicorn shuts down cleanly, then (since 0.29) re-raises the signal, so the status says what stopped it.
    assert srv.proc.returncode in (0, -signal.SIGTERM), srv.log.read_text()
    assert "Application shutdown complete" in srv.log.read_text()


@pytest.fixture(scope="module")
def offline(judge_params):
    """The same judge in this process: what ``batch_score`` says offline."""
    from editjudge.models.reward import Qwen3VLRewardModel

    return Qwen3VLRewardModel.from_config(dict(judge_params, show_progress=False))


@pytest.fixture
def client(server) -> RewardClient:
    return RewardClient(server.url, token=TOKEN, timeout=60, retries=1, backoff=0.1)


def good_request() -> dict:
    return {"items": [{"edited": b64(image(8)), "source": b64(image(2)), "instruction": "brighten it", "id": "ok"}]}


@pytest.fixture(scope="module")
def good_score(offline) -> float:
    return offline.batch_score([image(8)], original_images=[image(2)], instructions=["brighten it"])[0]


def assert_serving(server, expected: float) -> None:
    status, body = http("POST", server.url + "/v1/score", good_request(), token=TOKEN)
    assert status == 200, body
    assert body["results"][0]["score"] == expected and body["results"][0]["error"] is None


# ---------------------------------------------------------------------------------------- startup


def test_health_says_loading_until_the_judge_is_loaded_and_the_server_binds_loopback(server):
    import psutil

    assert server.seen[0] == ("health", 503, "loading"), server.seen
    assert ("score", 503, "loading") in server.seen  # a score request before the judge loaded
    assert server.seen[-1] == ("health", 200, "ready")
    status, body = http("GET", server.url + "/health")  # no token needed for health
    assert status == 200 and body["needs_source"] is True and body["limits"]["max_items"] == MAX_ITEMS
    log = server.log.read_text()
    assert "loopback only" in log and "bearer token required" in log
    listening = [c.laddr for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


# ---------------------------------------------------------------------------------------- scoring


def test_concurrent_clients_are_batched_together_and_match_offline_scores(server, offline):
    clients, requests, per_request = 16, 8, 4
    rng = random.Random(7)
    work = {(c, r): [(image(rng.randint(0, 10), (rng.randint(24, 96), rng.randint(24, 96)), seed=rng.getrandbits(32)),
                      image(rng.randint(0, 10), seed=rng.getrandbits(32)), f"make it level {rng.randint(0, 10)}")
                     for _ in range(per_request)] for c in range(clients) for r in range(requests)}
    before = server.metrics(TOKEN)

    def run(c: int) -> dict:
        client = RewardClient(server.url, token=TOKEN, timeout=120, retries=0)
        out = {}
        for r in range(requests):
            items = work[(c, r)]
            results = client.score([e for e, _, _ in items], [s for _, s, _ in items], [i for _, _, i in items],
                                   ids=[f"{c}-{r}-{k}" for k in range(per_request)])
            out[(c, r)] = results
        return out

    with ThreadPoolExecutor(clients) as pool:
        answers = {key: results for part in pool.map(run, range(clients)) for key, results in part.items()}
    after = server.metrics(TOKEN)

    ids = [r.id for key in sorted(answers) for r in answers[key]]
    assert len(ids) == len(set(ids)) == clients * requests * per_request  # every item answered, once
    for (c, r), results in answers.items():
        assert [x.id for x in results] == [f"{c}-{r}-{k}" for k in range(per_request)]  # in request order
    keys = sorted(work)
    flat = [item for key in keys for item in work[key]]
    expected = offline.batch_score([e for e, _, _ in flat], original_images=[s for _, s, _ in flat],
                                   instructions=[i for _, _, i in flat])
    served = [x.score for key in keys for x in answers[key]]
    assert served == expected
    assert all(x.error is None for key in keys for x in answers[key])
    # Items of different requests shared judge batches: some batch held more than one request's 4 items.
    assert after["editjudge_items_total"] - before["editjudge_items_total"] == len(flat)
    bigger = (after["editjudge_batch_size_count"] - after['editjudge_batch_size_bucket{le="4"}']) \
        - (before["editjudge_batch_size_count"] - before['editjudge_batch_size_bucket{le="4"}'])
    assert bigger > 0 and after["editjudge_batch_size_max"] > per_request
    assert after["editjudge_batch_size_max"] <= 16


def test_a_large_request_is_split_across_batches_and_groups_are_normalised(server, client, offline):
    n = 200
    levels = [(i * 7) % 11 for i in range(n)]
    edited = [image(level, seed=i) for i, level in enumerate(levels)]
    sources = [image(5, seed=1000 + i) for i in range(n)]
    groups = [f"large/{i // 8}" for i in range(n)]
    before = server.metrics(TOKEN)
    results = client.score(edited, sources, "adjust the brightness", groups=groups, ids=list(range(n)), group_size=8)
    after = server.metrics(TOKEN)
    assert [r.id for r in results] == list(range(n))
    assert [r.score for r in results] == offline.batch_score(edited, original_images=sources,
                                                             instructions=["adjust the brightness"] * n)
    batches = after["editjudge_batch_size_count"] - before["editjudge_batch_size_count"]
    assert batches >= n // 16 + 1  # 16 items per judge batch at most
    for g in set(groups):
        members = [r for r in results if r.group == g]
        scores = np.array([r.score for r in members])
        expected = (scores - scores.mean()) / (scores.std() + 1e-4)  # population std, epsilon 1e-4
        assert np.allclose([r.advantage for r in members], expected) and all(r.reward is None for r in members)
    # Version 1 keeps its documented meaning: ``reward`` within the request, its own group summaries.
    v1 = dict(RewardClient.build_payload(edited[:4], sources[:4], "x", groups=["a", "a", "b", 7], group_size=1),
              version=1)
    for item in v1["items"]:
        del item["group_size"]
    status, body = http("POST", server.url + "/v1/score", v1, token=TOKEN)
    assert status == 200 and body["version"] == 1 and body["normalization"]["epsilon"] == 1e-4
    assert [g["group"] for g in body["groups"]] == ["a", "b", 7] and body["groups"][2]["std"] == 0.0
    assert body["results"][3]["reward"] == 0.0 and "advantage" not in body["results"][3]
    scores = np.array([r["score"] for r in body["results"][:2]])
    assert np.allclose([r["reward"] for r in body["results"][:2]], (scores - scores.mean()) / (scores.std() + 1e-4))
    assert client.results(body)[0].reward == body["results"][0]["reward"]  # the client still reads version 1


def _flow_grpo_advantages(prompts: list, rewards: list[float]) -> list[float]:
    """Flow-GRPO's per-prompt normalisation after gathering every rank (flow_grpo/stat_tracking.py,
    PerPromptStatTracker.update, global_std off): (r - mean) / (std + 1e-4) per prompt, np.std (population)."""
    prompts, rewards = np.array(prompts), np.array(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    for prompt in np.unique(prompts):
        chosen = rewards[prompts == prompt]
        out[prompts == prompt] = (chosen - np.mean(chosen)) / (np.std(chosen) + 1e-4)
    return out.tolist()


def test_a_group_split_over_two_ranks_gets_the_trainers_advantages(server, client):
    """K=4 samples of each of 2 prompts, laid out as Flow-GRPO's K-repeat sampler spreads them over 2 ranks
    (each rank holds 2 of every prompt's 4); rank 1 sends later. Each rank's advantages are those the trainer
    computes over the gathered group, not over its own half (which a per-request normalisation would give)."""
    k, prompts = 4, ["p0", "p1"]
    levels = {"p0": [1, 9, 4, 6], "p1": [2, 2, 8, 3]}
    ranks = {r: [(p, j) for p in prompts for j in range(k) if j % 2 == r] for r in (0, 1)}

    def send(rank: int):
        if rank:
            time.sleep(0.5)  # the group waits on the server for the other rank
        members = ranks[rank]
        return client.score([image(levels[p][j], seed=j) for p, j in members], [image(5)] * len(members), "x",
                            groups=[f"split/{p}" for p, _ in members], group_size=k, ids=[f"{p}/{j}" for p, j in members])

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, [0, 1]))
    gathered = [r for answer in answers for r in answer]
    assert None not in [r.score for r in gathered]
    expected = _flow_grpo_advantages([r.group for r in gathered], [r.score for r in gathered])
    assert np.allclose([r.advantage for r in gathered], expected, atol=1e-9)
    half = np.array([r.score for r in answers[0][:2]])  # what normalising rank 0's half alone would say
    assert not np.allclose((half - half.mean()) / (half.std() + 1e-4), expected[:2])


def test_an_incomplete_group_answers_null_after_its_deadline(server, client):
    began = time.monotonic()
    results = client.score([image(2), image(7)], [image(5)] * 2, "x", groups=["lonely", "lonely"], group_size=4,
                           group_wait_s=0.5)
    assert time.monotonic() - began >= 0.5
    assert [r.advantage for r in results] == [None, None] and None not in [r.score for r in results]
    payload = RewardClient.build_payload([image(3)], [image(5)], "x", groups=["lonely"], group_size=4)
    status, body = http("POST", server.url + "/v1/score", payload, token=TOKEN)  # a late member: null at once
    assert status == 200 and body["results"][0]["advantage"] is None
    assert body["groups"][0]["status"] == "incomplete" and body["groups"][0]["mean"] is None
    status, body = http("POST", server.url + "/v1/score", RewardClient.build_payload(
        [image(3)], [image(5)], "x", groups=["lonely"], group_size=3), token=TOKEN)
    assert status == 409 and body["error"]["code"] == "group_size_mismatch"
    metrics = server.metrics(TOKEN)
    assert metrics['editjudge_groups_total{status="incomplete"}'] >= 1


def test_one_bad_item_fails_alone_among_concurrent_requests(server, client, offline):
    """An image the processor refuses (aspect ratio over 200) fails its item; its batch-mates keep their scores."""
    bad = Image.new("RGB", (1, 300), (128, 128, 128))
    good = [image(level, seed=level) for level in (1, 9, 4)]
    before = server.metrics(TOKEN)

    def send(k: int):
        edited = good[:k] + [bad] + good[k:] if k >= 0 else good
        return client.score(edited, [image(5)] * len(edited), "x", ids=list(range(len(edited))))

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, [1, -1, -1, -1]))
    expected = offline.batch_score(good, original_images=[image(5)] * 3, instructions=["x"] * 3)
    assert answers[0][1].score is None and "aspect ratio" in answers[0][1].error
    assert [r.score for r in answers[0] if r.id != 1] == expected
    assert all([r.score for r in answer] == expected for answer in answers[1:])
    after = server.metrics(TOKEN)
    assert after["editjudge_item_failures_total"] - before["editjudge_item_failures_total"] == 1


# ---------------------------------------------------------------------------------------- bad input


def _item(**fields) -> dict:
    item = {"edited": b64(image(3)), "source": b64(image(3)), "instruction": "x"}
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


BAD = {
    "not json": (b"{not json", 400, "invalid_json", None),
    "no items": ({"version": 1}, 422, "invalid_field", "items"),
    "empty items": ({"items": []}, 422, "invalid_field", "items"),
    "missing instruction": ({"items": [{"edited": "aGk=", "source": "aGk="}]}, 422, "invalid_field",
                            "items[0].instruction"),
    "instruction not a string": ({"items": [_item(instruction=5)]}, 422, "invalid_field", "items[0].instruction"),
    "items not a list": ({"items": {"edited": "x"}}, 422, "invalid_field", "items"),
    "unknown field": ({"items": [_item(colour="red")]}, 422, "invalid_field", "items[0].colour"),
    "unknown version": ({"version": 3, "items": [_item()]}, 422, "unsupported_version", "version"),
    "v2 group without its size": ({"version": 2, "items": [_item(group="g")]}, 422, "invalid_field",
                                  "items[0].group_size"),
    "v1 with a group size": ({"items": [_item(group="g", group_size=2)]}, 422, "invalid_field", "items[0].group_size"),
    "v2 group sizes disagree": ({"version": 2, "items": [_item(group="g", group_size=2), _item(group="g", group_size=3)]},
                                422, "invalid_field", "items[1].group_size"),
    "unknown rubric": ({"rubric": "viescore", "items": [_item()]}, 422, "unknown_rubric", "rubric"),
    "missing source": ({"items": [_item(), _item(source=None)]}, 422, "invalid_field", "items[1].source"),
    "bad base64": ({"items": [_item(), _item(edited="%%% not base64")]}, 400, "bad_base64", "items[1].edited"),
    "bad base64 source": ({"items": [_item(source="abc")]}, 400, "bad_base64", "items[0].source"),
    "not an image": ({"items": [_item(edited=base64.b64encode(b"hello, world").decode())]}, 400, "not_an_image",
                     "items[0].edited"),
    "truncated png": ({"items": [_item(edited=b64(image(3))[:200])]}, 400, "not_an_image", "items[0].edited"),
    "gif": ({"items": [_item(edited=b64(image(3), "GIF"))]}, 400, "unsupported_format", "items[0].edited"),
    "too many pixels": ({"items": [_item(edited=b64(image(3, (101, 100))))]}, 413, "image_too_large",
                        "items[0].edited"),
    "header claims a huge image": ({"items": [_item(source=base64.b64encode(png_claiming(60000, 60000)).decode())]},
                                   413, "image_too_large", "items[0].source"),
    "too many items": ({"items": [_item()] * (MAX_ITEMS + 1)}, 413, "too_many_items", "items"),
    # issue #26: counted before any item is validated (see test_a_million_tiny_items_...)
    "a million empty items": (b'{"items": [' + b",".join([b"{}"] * 1_000_000) + b"]}", 413, "too_many_items",
                              "items"),
    "items not a list, huge": (b'{"items": {' + b",".join(b'"k%d": {}' % i for i in range(100_000)) + b"}}", 422,
                               "invalid_field", "items"),
    "unknown top-level key": ({"colour": [1] * 1000, "items": [_item()]}, 422, "invalid_field", "colour"),
    "nested too deeply": (b'{"items": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400, "invalid_json", None),
    # 256 x 2 images of 95x95 (flat, so the body stays small): more decoded pixels than the queue may hold.
    "request over the queue's pixels": ({"items": [_item(edited=b64(Image.new("RGB", (95, 95))),
                                                          source=b64(Image.new("RGB", (95, 95))))] * MAX_ITEMS},
                                        413, "too_many_pixels", "items"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_clear_4xx_and_the_server_goes_on(server, good_score, case):
    body, status, code, field = BAD[case]
    got, answer = http("POST", server.url + "/v1/score", body, token=TOKEN)
    assert (got, answer["error"]["code"], answer["error"]["field"]) == (status, code, field), answer
    assert answer["version"] == 2 and answer["error"]["message"]
    if field:
        assert answer["error"]["message"].startswith(field)
    assert_serving(server, good_score)


def test_jpeg_webp_and_data_urls_are_accepted(server):
    items = [_item(edited=b64(image(7), "JPEG")), _item(edited="data:image/webp;base64," + b64(image(7), "WEBP"))]
    status, body = http("POST", server.url + "/v1/score", {"items": items}, token=TOKEN)
    assert status == 200 and [r["error"] for r in body["results"]] == [None, None]


def test_unknown_paths_and_methods_answer_in_the_error_format(server):
    status, body = http("GET", server.url + "/v1/score", token=TOKEN)
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and body["_headers"]["allow"] == "POST"
    status, body = http("POST", server.url + "/v2/score", good_request(), token=TOKEN)
    assert status == 404 and body["error"]["code"] == "not_found" and "/v2/score" in body["error"]["message"]


def test_body_limit_is_checked_before_reading_it(server, good_score):
    """A Content-Length over the limit is refused from the header; a chunked body once it passes the limit."""
    limit = MAX_BODY_MB * 2**20
    for head, body in [
        (f"Content-Length: {limit + 1}\r\n", b""),  # nothing sent: the answer can only come from the header
        ("Transfer-Encoding: chunked\r\n", b"".join(b"%x\r\n" % 2**20 + b"x" * 2**20 + b"\r\n"
                                                    for _ in range(MAX_BODY_MB + 1))),
    ]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                         f"Content-Type: application/json\r\n{head}\r\n".encode() + body)
            answer = b""
            while b"body_too_large" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer, answer[:300]
    assert_serving(server, good_score)


def test_token_is_required_and_never_logged(server, good_score):
    for token in (None, "wrong-token"):
        status, body = http("POST", server.url + "/v1/score", good_request(), token=token)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert body["_headers"]["www-authenticate"] == "Bearer"
        assert http("GET", server.url + "/metrics", token=token, raw=True)[0] == 401
    with pytest.raises(RewardServerError) as caught:
        RewardClient(server.url, token="wrong-token", retries=3).score([image(1)], [image(1)], "x")
    assert caught.value.status == 401  # not retried: a 401 answers at once
    assert_serving(server, good_score)
    assert TOKEN not in server.log.read_text()


def test_metrics_are_prometheus_text(server):
    status, text = http("GET", server.url + "/metrics", token=TOKEN, raw=True)
    assert status == 200
    metrics = parse_metrics(text)
    for name in ("editjudge_requests_total{code=\"200\"}", "editjudge_items_total", "editjudge_item_failures_total",
                 "editjudge_batch_size_count", "editjudge_queue_depth", "editjudge_request_seconds_count",
                 "editjudge_ready"):
        assert name in metrics, name
    assert metrics["editjudge_ready"] == 1 and metrics["editjudge_queue_depth"] == 0
    assert metrics["editjudge_queue_pixels"] == 0  # every reservation was taken or given back
    assert "# TYPE editjudge_batch_size histogram" in text


# ---------------------------------------------------------------------------------------- limits and faults


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, judge_path):
    tmp = tmp_path_factory.mktemp("small-server")
    srv = Server(tmp, {"model_path": judge_path, "max_new_tokens": 12},
                 ["--batch-size", "1", "--max-queue", "32", "--max-items", "32", "--devices", "cpu,cpu"])
    yield srv
    srv.stop()


def test_queue_full_gets_429_with_retry_after_and_the_client_retries(small_server):
    url = small_server.url
    first = {"items": [{"edited": b64(image(i % 11, (96, 96), seed=i)), "instruction": "x"} for i in range(32)]}
    answers = {}
    worker = threading.Thread(target=lambda: answers.setdefault("first", http("POST", url + "/v1/score", first)))
    worker.start()
    deadline = time.monotonic() + 30
    while small_server.metrics()["editjudge_queue_depth"] == 0 and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    status, body = http("POST", url + "/v1/score", first)  # refused while any of the first request's items waits
    assert status == 429 and body["error"]["code"] == "queue_full", body
    assert int(body["_headers"]["retry-after"]) >= 1
    # The client waits out Retry-After and gets its answer once the queue has room.
    client = RewardClient(url, retries=10, backoff=0.2, timeout=60)
    results = client.score([image(4)], None, "x")
    worker.join(timeout=60)
    status, body = answers["first"]
    assert status == 200 and len(body["results"]) == 32 and all(r["error"] is None for r in body["results"])
    # A real answer: the one the judge gives that image when nothing waits (any judge, any build).
    assert results[0].error is None and client.score([image(4)], None, "x")[0].score == results[0].score
    metrics = small_server.metrics()
    assert metrics['editjudge_requests_total{code="429"}'] >= 1
    # Two replicas (--devices cpu,cpu) took batches from the one queue.
    assert http("GET", url + "/health")[1]["replicas"] == 2
    assert metrics['editjudge_replica_batches_total{replica="0"}'] > 0
    assert metrics['editjudge_replica_batches_total{replica="1"}'] > 0


def test_server_killed_mid_load_makes_clients_fail_clearly(small_server):
    """SIGKILL while 4 clients are sending: each raises RewardServerError after its retries, none hangs."""
    done = threading.Event()
    outcome: dict[int, object] = {}

    def load(k: int) -> None:
        client = RewardClient(small_server.url, timeout=10, retries=2, backoff=0.2)
        try:
            for _ in range(200):  # bounded; the kill comes long before
                client.score([image(3, seed=k)] * 4, None, "x")
                done.set()
            outcome[k] = "finished without an error"
        except RewardServerError as exc:
            outcome[k] = exc

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    assert done.wait(60)
    os.kill(small_server.proc.pid, signal.SIGKILL)
    small_server.proc.wait(timeout=10)
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a client hung after the server died"
    for k, exc in outcome.items():
        assert isinstance(exc, RewardServerError), exc
        assert "failed after 3 attempt(s)" in str(exc) and small_server.url in str(exc), exc
    assert len(outcome) == 4


# ---------------------------------------------------------------------------------------- configuration


# ---------------------------------------------------------------------------------------- issue #26

HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 2.0
CUT = 100  # --max-instruction-chars


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory, judge_path):
    """Short connection timeouts and a short instruction limit; token required."""
    tmp = tmp_path_factory.mktemp("guarded-server")
    srv = Server(tmp, {"model_path": judge_path, "max_new_tokens": 12, "batch_size": 4},
                 ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
                  "--keep-alive-timeout", "1", "--max-instruction-chars", str(CUT), "--max-items", "512"], token=TOKEN)
    yield srv
    srv.stop()


def _health_while(url: str, work) -> tuple[object, list[float]]:
    """``work()``'s result, and how long each GET /health took while it ran (one every 20 ms)."""
    waits: list[float] = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            started = time.perf_counter()
            status, _ = http("GET", url + "/health", timeout=10)
            assert status == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.02)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        result = work()
    finally:
        done.set()
        thread.join()
    return result, waits


def test_a_million_tiny_items_get_a_quick_small_413_and_health_stays_up(guarded_server):
    """Before: 18.4 s, a 422 of 112.8 MB and /health stalled. Items are counted before any is validated."""
    body = b'{"items": [' + b",".join([b"{}"] * 1_000_000) + b"]}"
    assert len(body) > 3_000_000
    started = time.perf_counter()
    (status, text), waits = _health_while(guarded_server.url, lambda: http(
        "POST", guarded_server.url + "/v1/score", body, token=TOKEN, raw=True))
    elapsed = time.perf_counter() - started
    answer = json.loads(text)
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (413, "too_many_items", "items")
    assert answer["error"]["message"] == ("items: more than 512 items, over this server's limit of 512 per request "
                                          "(split the request)")
    assert len(text) < 1000 and elapsed < 5, (len(text), elapsed)
    assert waits and max(waits) < 2
    # At the limit every item is validated, and the answer lists the first problems and says how many more.
    status, answer = http("POST", guarded_server.url + "/v1/score", {"items": [{}] * 512}, token=TOKEN)
    assert status == 422 and answer["error"]["message"] == "items[0].edited: required (and 1023 more problem(s))"
    assert len(answer["details"]) == 11 and answer["details"][-1] == {
        "field": None, "message": "... and 1014 more problem(s) not listed"}
    assert len(json.dumps(answer)) < 2000


def test_long_instructions_are_cut_as_the_job_cuts_them(guarded_server):
    edited = b64(image(5))
    status, answer = http("POST", guarded_server.url + "/v1/score", {"items": [
        {"edited": edited, "instruction": "brighten it " * 25_000, "id": "long"},
        {"edited": edited, "instruction": ("brighten it " * 25_000)[:CUT], "id": "cut"},
        {"edited": edited, "instruction": "x" * CUT, "id": "at the limit"}]}, token=TOKEN)
    assert status == 200, answer
    long, cut, at_limit = answer["results"]
    assert long["instruction_truncated_from"] == 300_000 and long["error"] is None
    assert "instruction_truncated_from" not in cut and "instruction_truncated_from" not in at_limit
    assert long["score"] == cut["score"] and long["raw_output"] == cut["raw_output"]  # judged on the same text


def _raw(port: int, payload: bytes, limit: float) -> tuple[bytes, float]:
    """What the server sends back on a connection given ``payload`` (then silence), and when it closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        started = time.perf_counter()
        if payload:
            sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data, time.perf_counter() - started


def test_slow_headers_slow_bodies_and_idle_connections_are_closed(guarded_server, good_score_small):
    head = (f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    cases = {"idle": (b"", HEADER_TIMEOUT), "slow headers": (b"POST /v1/score HTTP/1.1\r\nHost: x\r\n", HEADER_TIMEOUT),
             "slow body": (head + b'{"items": [', BODY_TIMEOUT)}
    for name, (payload, timeout) in cases.items():
        data, seconds = _raw(guarded_server.port, payload, limit=timeout + 20)
        assert timeout - 0.1 < seconds < timeout + 5, (name, seconds)
        if name == "slow body":
            assert data.startswith(b"HTTP/1.1 408 ") and b'"code": "request_timeout"' in data, data
        else:
            assert data == b"", (name, data)  # no request to answer: the connection is closed
    log = guarded_server.log.read_text()
    assert log.count("took over 1 s (--header-timeout)") >= 2 and "took over 2 s (--body-timeout)" in log
    status, answer = http("POST", guarded_server.url + "/v1/score", {"items": [
        {"edited": b64(image(8)), "instruction": "brighten it"}]}, token=TOKEN)
    assert status == 200 and answer["results"][0]["score"] == good_score_small


@pytest.fixture(scope="module")
def good_score_small(judge_path) -> float:
    from editjudge.models.reward import Qwen3VLRewardModel

    model = Qwen3VLRewardModel.from_config({"model_path": judge_path, "max_new_tokens": 12, "show_progress": False})
    return model.batch_score([image(8)], instructions=["brighten it"])[0]


def test_a_client_gone_mid_upload_is_one_info_line(guarded_server):
    before = guarded_server.log.read_text()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=10) as sock:
            sock.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
                         + b'{"items": [' + b"x" * 5000)
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = guarded_server.log.read_text()[len(before):]
        if new.count("disconnected before its request body was read") >= 3:
            break
        time.sleep(0.1)
    lines = new.splitlines()
    assert len(lines) == 3 and all(" INFO editjudge.serve.app: client 127.0.0.1:" in line for line in lines), new
    assert "Traceback" not in guarded_server.log.read_text()
    assert http("GET", guarded_server.url + "/health")[0] == 200


def test_serve_help_documents_the_timeouts_and_bad_values_exit_2(tmp_path, judge_path, capsys):
    from editjudge.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--header-timeout HEADER_TIMEOUT seconds a client has from opening a connection",
                 "(default 10.0)", "--body-timeout BODY_TIMEOUT", "then it gets 408", "(default 60.0)",
                 "--keep-alive-timeout", "(uvicorn's timeout_keep_alive; default 5.0)",
                 "--max-instruction-chars", "instruction_truncated_from (default 2000)"):
        assert flag in text, flag
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"reward_model": {"params": {"model_path": judge_path}}}))
    assert main(["serve", "--config", str(good), "--body-timeout", "0", "--max-instruction-chars", "0"]) == 2
    err = capsys.readouterr().err
    assert "body_timeout must be a positive number of seconds, got 0.0" in err
    assert "max_instruction_chars must be at least 1, got 0" in err


def test_config_and_flag_mistakes_exit_2_before_loading(tmp_path, judge_path, capsys):
    from editjudge.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"reward_model": {"params": {"model_path": judge_path, "colour": 1,
                                                               "rubric": "nope"}}, "benchmrk": {}}))
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "benchmrk: unknown key" in err and "colour" in err and "rubric" in err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"reward_model": {"params": {"model_path": judge_path}}}))
    assert main(["serve", "--config", str(good), "--max-items", "64", "--max-queue", "8"]) == 2
    assert "max_items (64) must not exceed max_queue (8)" in capsys.readouterr().err
    from editjudge.config import load_reward_model_config

    job = load_reward_model_config(ROOT / "config.yaml")  # the job's own config serves as is
    assert job.type == "qwen3_vl" and job.params["model_path"] == "Qwen/Qwen3-VL-8B-Instruct"


def test_a_judge_that_cannot_load_stops_the_server_with_status_1(tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()  # exists, so the config is valid; loading it fails
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"reward_model": {"params": {"model_path": str(empty)}}}))
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "serve", "--config", str(config), "--port",
                             str(_free_port())], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "the judge failed to load; the server stops" in result.stderr


def test_client_encodes_arrays_paths_and_checks_lengths(tmp_path):
    im = image(6, (20, 10))
    path = tmp_path / "a.png"
    im.save(path)
    decoded = [Image.open(io.BytesIO(base64.b64decode(encode_image(x)))).convert("RGB")
               for x in (im, np.asarray(im), np.asarray(im).transpose(2, 0, 1).astype(np.float32) / 255, str(path))]
    for d in decoded:
        assert d.size == (20, 10) and np.array_equal(np.asarray(d), np.asarray(im))
    with pytest.raises(ValueError, match="sources has 1 entries but edited has 2"):
        RewardClient.build_payload([im, im], [im], "x")
    with pytest.raises(ValueError, match="shape"):
        encode_image(np.zeros((2, 3, 5, 7)))
    assert "secret" not in repr(RewardClient("http://127.0.0.1:1", token="secret"))


# ---------------------------------------------------------------------------------------- in process


def test_group_rewards_leave_out_items_without_a_score():
    from editjudge.serve.schema import normalize_groups

    results = [{"group": g, "score": s, "reward": None}
               for g, s in [("a", 2.0), ("a", None), ("a", 4.0), (1, None), (None, 3.0), ("1", 5.0)]]
    groups = normalize_groups(results)
    assert [r["reward"] for r in results] == [pytest.approx(-1 / (1 + 1e-4)), None, pytest.approx(1 / (1 + 1e-4)),
                                              None, None, 0.0]
    assert groups == [{"group": "a", "count": 3, "scored": 2, "mean": 3.0, "std": 1.0},
                      {"group": 1, "count": 1, "scored": 0, "mean": None, "std": None},
                      {"group": "1", "count": 1, "scored": 1, "mean": 5.0, "std": 0.0}]  # 1 and "1" are two groups


def test_a_rubric_answers_with_its_sub_scores_through_the_batcher(judge_path):
    """The viescore rubric through a judge thread: the same scores and sub-scores as ``score_with_rubric``."""
    from editjudge.models.reward import Qwen3VLRewardModel
    from editjudge.models.reward.rubrics import get_rubric, score_with_rubric
    from editjudge.serve.batcher import BatchQueue, JudgeWorker
    from editjudge.serve.metrics import Metrics
    from editjudge.serve.schema import Item, item_result

    model = Qwen3VLRewardModel(judge_path, max_new_tokens=40, batch_size=8, show_progress=False)
    rubric = get_rubric("viescore")
    queue = BatchQueue(16, 10**9)
    metrics = Metrics(lambda: len(queue), 16, lambda: True)
    worker = JudgeWorker(model, rubric, queue, 8, 0.2, metrics, name="judge-test")
    worker.start()
    edited, sources = [image(level, seed=level) for level in (2, 8, 5)], [image(5)] * 3
    got: dict[int, dict] = {}
    finished = threading.Event()

    def deliver(i: int):
        def done(result):
            got[i] = result
            if len(got) == len(edited):
                finished.set()
        return done

    try:
        assert queue.reserve(3, 0)
        queue.put([Job(e, s, "brighten it", deliver(i)) for i, (e, s) in enumerate(zip(edited, sources))])
        assert finished.wait(120)
    finally:
        queue.close()
        worker.join(timeout=30)
    expected = score_with_rubric(model, rubric, edited, ["brighten it"] * 3, sources)
    lines = [item_result(Item(edited="-", instruction="-"), got[i]) for i in range(3)]
    assert [line["score"] for line in lines] == [r.score for r in expected]
    assert [line["sub_scores"] for line in lines] == [r.sub_scores for r in expected]
    assert any(line["score"] is not None for line in lines)
    assert set(lines[0]["sub_scores"]) == {"editing_success", "over_editing", "naturalness", "artifacts", "SC", "PQ",
                                           "overall"}
    assert metrics.largest_batch == 3  # the three items went to the judge together


def test_a_judge_call_that_raises_is_retried_item_by_item():
    """A backend that refuses a whole batch (an API judge's error, say): only the item that causes it fails.

    The judge here is a stand-in: what is tested is the batcher's fallback, not a score."""
    from editjudge.models.reward.results import ScoreResult
    from editjudge.models.reward.rubrics import get_rubric
    from editjudge.serve.batcher import JudgeWorker

    class RefusingJudge:
        compare_with_original = False

        def __init__(self):
            self.calls = []

        def batch_evaluate(self, images, instructions=None, original_images=None, item_ids=None):  # the contract's
            self.calls.append(list(images))
            if "poison" in images:
                raise RuntimeError("the backend refused the batch")
            return [ScoreResult(score=float(len(image))) for image in images]

    judge = RefusingJudge()
    worker = JudgeWorker(judge, get_rubric("simple"), queue=None, batch_size=8, max_wait=0, metrics=None, name="t")
    jobs = [Job(image, None, "x", done=lambda r: None) for image in ("aa", "poison", "bbbb")]
    results = worker.score(jobs)
    assert [r["score"] for r in results] == [2.0, None, 4.0]
    assert results[1]["error"] == "judge error: RuntimeError: the backend refused the batch"
    assert judge.calls == [["aa", "poison", "bbbb"], ["aa"], ["poison"], ["bbbb"]]
