"""The reward server under a cluster's load (run through ``python bench/reward_server.py --load``).

    python bench/reward_server.py --load                                  # tiny judge, 64 clients, 1024x1024
    python bench/reward_server.py --load --clients 16 --requests 2 --image-size 256   # a small run
    python bench/reward_server.py --load --fake-vllm                      # a judge with a backend process to kill

One real server (``main.py serve``). Clients come in pairs, "ranks" 0 and 1 of one trainer: each
request holds, for each of its prompts, half of the prompt's K samples (wire version 2, group_size
K), so every group is split over two requests. Every 2nd request is sent twice at once with the
same ``Idempotency-Key`` (a retry racing its first attempt). Meanwhile a separate client process is
killed (SIGKILL) mid-request, ``/health`` is polled every 50 ms, and with ``--kill-backend-after S``
the judge's backend process (the vLLM judge's server; ``--fake-vllm`` uses the tests' stand-in) is
killed after S seconds. Printed: items/s, request latency p50/p95/p99, the server's peak RSS,
``/health`` latency under load, items scored twice (the judge's item count against the items sent
once each: must be 0), items lost (sent by a live client and neither answered nor refused with a
clear status: must be 0), groups whose advantages differ from the gathered group's (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from reward_server import ROOT, ServerProcess, _images  # noqa: E402 (same folder)

from editjudge.client import RewardClient, RewardServerError  # noqa: E402

KILLED_CLIENT = """
import sys, time
sys.path.insert(0, {root!r}); import main
from editjudge.client import RewardClient
import json
payload = json.load(open({path!r}))
print("sending", flush=True)
RewardClient({url!r}, retries=0, timeout=600).score_payload(payload)
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def main_load(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a config with a reward_model section (default: the tiny judge on the CPU)")
    parser.add_argument("--fake-vllm", action="store_true", help="the vLLM judge on the tests' stand-in server")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (pairs of ranks)")
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per request (each with K/2 samples)")
    parser.add_argument("--k", type=int, default=4, help="samples per prompt (group size), split over 2 ranks")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--kill-backend-after", type=float, help="seconds into the run to kill the judge's backend")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--out", default="bench_results")
    args = parser.parse_args(argv)
    if args.clients % 2 or args.k % 2:
        parser.error("--clients and --k must be even (two ranks)")
    work = Path(tempfile.mkdtemp(prefix="editjudge-load-"))
    config = Path(args.config) if args.config else work / "serve.yaml"
    if not args.config:
        import yaml

        if args.fake_vllm:
            sys.path.insert(0, str(ROOT))
            from tests.fake_vllm import fake_python

            params = {"model_path": "tiny/judge", "python": fake_python(work, work / "fake.jsonl"),
                      "ready_timeout": 60, "max_retries": 0, "output_dir": str(work / "out")}
            config.write_text(yaml.safe_dump({"reward_model": {"type": "vllm", "params": params}}))
        else:
            from editjudge.tools.make_tiny_models import ensure_tiny_models

            cache = Path(os.environ.get("EDITJUDGE_CACHE", ROOT / ".cache" / "tiny-models"))
            config.write_text(yaml.safe_dump({"reward_model": {"type": "qwen3_vl", "params": {
                "model_path": str(ensure_tiny_models(cache)["judge"]), "max_new_tokens": 12}}}))

    half = args.k // 2
    per_request = args.prompts * half
    pool = _images(8, args.image_size, seed=0)  # reused: bodies are full-size, memory stays small
    sources = _images(2, args.image_size, seed=1)
    pairs = args.clients // 2
    payloads: dict[tuple[int, int, int], dict] = {}  # (pair, rank, request) -> body
    for pair in range(pairs):
        for r in range(args.requests):
            for rank in (0, 1):
                groups, edited = [], []
                for p in range(args.prompts):
                    for j in range(half):
                        groups.append(f"pair{pair}/step{r}/prompt{p}")
                        edited.append(pool[(pair + r + p + j + rank * half) % len(pool)])
                payloads[(pair, rank, r)] = RewardClient.build_payload(
                    edited, [sources[rank]] * len(edited), "brighten it", groups=groups, group_size=args.k,
                    ids=[f"{pair}/{rank}/{r}/{i}" for i in range(len(edited))])
    flags = ["--max-bodies", "16", "--max-image-pixels", str(max(args.image_size ** 2, 4096 * 4096)),
             "--max-body-mb", "256", "--group-wait-s", "300"]
    server = ServerProcess(config, args.batch_size, 10.0, work / "server.log", args.threads, extra=flags)
    stop = threading.Event()
    health: list[float] = []
    latencies: list[float] = []
    lock = threading.Lock()
    answers: dict[tuple[int, int, int], dict] = {}
    refused: list[str] = []
    lost: list[str] = []
    try:
        server.wait_ready()
        before = server.metrics()

        def poll_health() -> None:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    urllib.request.urlopen(server.url + "/health", timeout=30).read()
                except urllib.error.HTTPError:
                    pass
                except OSError:
                    continue
                health.append(time.perf_counter() - began)
                time.sleep(0.05)

        def client_loop(k: int) -> None:
            pair, rank = divmod(k, 2)
            client = RewardClient(server.url, retries=5, timeout=600, backoff=0.5)
            for r in range(args.requests):
                payload, key = payloads[(pair, rank, r)], f"{k}-{r}"
                began = time.perf_counter()
                try:
                    if r % 2 == 1:  # a retry racing its first attempt: same key, same body
                        twin = threading.Thread(target=lambda: RewardClient(server.url, retries=5, timeout=600)
                                                .score_payload(payload, idempotency_key=key))
                        twin.start()
                    answer = client.score_payload(payload, idempotency_key=key)
                    if r % 2 == 1:
                        twin.join()
                except RewardServerError as exc:
                    with lock:
                        (refused if exc.status in (429, 503) else lost).append(f"{key}: {exc}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - began)
                    answers[(pair, rank, r)] = answer

        killed_path = work / "killed.json"
        killed_payload = RewardClient.build_payload(pool[:6], sources[:1] * 6, "brighten it")
        killed_path.write_text(json.dumps(killed_payload))
        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        victim = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT.format(root=str(ROOT), path=str(killed_path),
                                                                               url=server.url)],
                                  stdout=subprocess.PIPE, cwd=ROOT)
        victim.stdout.readline()
        time.sleep(1.0)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        backend_killed = "not asked (--kill-backend-after)"
        if args.kill_backend_after is not None:
            time.sleep(max(0.0, args.kill_backend_after - (time.perf_counter() - began)))
            children = _children(server.proc.pid)
            if children:
                os.kill(children[0], signal.SIGKILL)
                backend_killed = f"pid {children[0]} at {time.perf_counter() - began:.1f} s"
            else:
                backend_killed = "n/a: this judge has no backend process"
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        time.sleep(1.0)  # the killed client's keyed work may still be finishing
        stop.set()
        poller.join()
        after = server.metrics()
        rss = _peak_rss_mb(server.proc.pid)
        health_after = _health_status(server.url)
    finally:
        stop.set()
        server.stop()

    answered = sum(len(a["results"]) for a in answers.values())
    scored = sum(1 for a in answers.values() for r in a["results"] if r["score"] is not None)
    judged = after["editjudge_items_total"] - before["editjudge_items_total"]
    cancelled = after["editjudge_items_cancelled_total"] - before["editjudge_items_cancelled_total"]
    # The killed client's items were scored, cancelled, or never admitted (killed before its body was
    # read, or refused busy): whatever the judge scored beyond the answered items and those is twice.
    killed_open = len(killed_payload["items"]) - cancelled
    killed_scored = min(max(0.0, judged - answered), killed_open)
    twice = judged - answered - killed_scored
    wrong_groups, complete = 0, 0
    for pair in range(pairs):
        for r in range(args.requests):
            both = [answers.get((pair, rank, r)) for rank in (0, 1)]
            if None in both:
                continue
            results = both[0]["results"] + both[1]["results"]
            for p in range(args.prompts):
                members = [x for x in results if x["group"] == f"pair{pair}/step{r}/prompt{p}"]
                scores = [x["score"] for x in members]
                if None in scores:
                    wrong_groups += any(x["advantage"] is not None for x in members)
                    continue
                complete += 1
                s = np.array(scores)
                expected = (s - s.mean()) / (s.std() + 1e-4)
                wrong_groups += not np.allclose([x["advantage"] for x in members], expected)
    sent = len(payloads) * per_request
    print(f"\n{args.clients} clients ({pairs} pairs of ranks), {args.requests} requests each of {per_request} items "
          f"({args.prompts} prompts x {half} of K={args.k}), {args.image_size}x{args.image_size} source and edit")
    print(f"items/s            {answered / wall:.2f}  ({answered} items answered in {wall:.1f} s, {scored} scored)")
    print(f"latency p50/p95/p99 {statistics.median(latencies):.2f} / {_percentile(latencies, 0.95):.2f} / "
          f"{_percentile(latencies, 0.99):.2f} s" if latencies else "latency            no answers")
    print(f"server peak RSS    {rss:.0f} MiB")
    print(f"/health under load p50 {statistics.median(health) * 1000:.1f} ms, p99 {_percentile(health, 0.99) * 1000:.1f}"
          f" ms, max {max(health) * 1000:.1f} ms ({len(health)} polls)" if health else "/health            no polls")
    print(f"killed client      6 items; {cancelled:.0f} cancelled on the server, {killed_scored:.0f} scored, "
          f"{killed_open - killed_scored:.0f} never admitted")
    print(f"backend killed     {backend_killed}; /health after: {health_after}")
    print(f"refused (told)     {len(refused)} requests{': ' + refused[0][:160] if refused else ''}")
    print(f"groups             {complete} complete, {wrong_groups} with advantages not the gathered group's (must be 0)")
    print(f"items scored twice {twice:.0f} (must be 0)   [judge items {judged:.0f}, sent once each {sent}]")
    print(f"items lost         {len(lost) * per_request} (must be 0){': ' + lost[0][:160] if lost else ''}")
    print(f"replays            {after.get('editjudge_idempotent_replays_total', 0):.0f} retried requests answered "
          f"without scoring again; alarms: "
          f"{ {k.split('=')[1][1:-2]: v for k, v in after.items() if k.startswith('editjudge_reward_alarm')} }")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "server_load.json").write_text(json.dumps({"settings": vars(args), "items_per_s": answered / wall,
                                                      "twice": twice, "lost": len(lost) * per_request,
                                                      "wrong_groups": wrong_groups, "peak_rss_mb": rss}, indent=2))
    return 0 if twice == 0 and not lost and wrong_groups == 0 else 1


def _health_status(url: str) -> str:
    try:
        with urllib.request.urlopen(url + "/health", timeout=30) as response:
            return f"{response.status} {json.loads(response.read())['status']}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {json.loads(exc.read()).get('status')}"