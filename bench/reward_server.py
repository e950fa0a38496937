"""Reward server throughput: dynamic batching on vs off, with 1, 4 and 16 concurrent clients, side by side.

    python bench/reward_server.py                                   # the tiny judge on the CPU
    python bench/reward_server.py --config config.yaml --image-size 512 --batch-size 16   # your judge
    python bench/reward_server.py --clients 1,8,32 --requests 16 --items 8 --out /tmp/bench-server

Starts two real servers (``main.py serve``) on 127.0.0.1 with the same judge: one batching across
requests (``--batch-size``, ``--max-wait-ms``) and one with ``batch_size: 1`` (off). For each
number of clients, each client thread sends ``--requests`` requests of ``--items`` images one after
another (bodies built before the clock starts, so the figures are the server's and HTTP's).
Rounds are interleaved (every configuration once, then again, ``--repeats`` times) so load from
other processes hits both servers alike; only one server is busy at a time. A configuration's
figures are its best round: items/s over the round's wall time, p50/p95 request latency, and the
mean judge batch size from the server's ``/metrics``. Writes OUT/server_bench.json and prints the
table. Both servers are stopped by PID on every exit path.

    python bench/reward_server.py --load --clients 64 --image-size 1024   # the cluster-load scenario

``--load`` runs ``bench/reward_server_load.py`` instead (64 clients, groups split over two ranks,
1024x1024 bodies, a client killed mid-request, the backend killed mid-run; see its docstring).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import main  # noqa: E402,F401  (the checkout's src/ as editjudge)

import yaml  # noqa: E402

from editjudge.client import RewardClient  # noqa: E402
from editjudge.serve.metrics import parse_metrics  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, config: Path, batch_size: int, max_wait_ms: float, log: Path, threads: int,
                 extra: list[str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env.pop("EDITJUDGE_SERVER_TOKEN", None)
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), "serve", "--config", str(config), "--port", str(self.port),
                 "--batch-size", str(batch_size), "--max-wait-ms", str(max_wait_ms), "--max-queue", "100000",
                 "--max-items", "10000", "--log-level", "WARNING", *(extra or [])], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT)

    def wait_ready(self, limit: float = 600) -> None:
        client = RewardClient(self.url, retries=0, timeout=10)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                client.health()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        raise RuntimeError(f"server not ready after {limit} s")

    def metrics(self) -> dict[str, float]:
        return parse_metrics(RewardClient(self.url, retries=0, timeout=30).metrics())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _images(n: int, size: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        level = rng.integers(0, 11)
        pixels = np.clip(level * 25.5 + rng.normal(0, 6, size=(size, size, 3)), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(pixels, "RGB"))
    return out


def run_round(server: ServerProcess, clients: int, payloads: list[list[dict]], timeout: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client_loop(k: int) -> None:
        client = RewardClient(server.url, retries=0, timeout=timeout)
        start.wait()
        for payload in payloads[k]:
            began = time.perf_counter()
            try:
                answer = client.score_payload(payload)
                failed = [r["error"] for r in answer["results"] if r["error"]]
            except Exception as exc:  # noqa: BLE001 - reported in the figures
                failed = [f"{type(exc).__name__}: {exc}"]
            with lock:
                latencies.append(time.perf_counter() - began)
                errors.extend(failed)

    before = server.metrics()
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    after = server.metrics()
    items = sum(len(p["items"]) for loop in payloads[:clients] for p in loop)
    batches = after["editjudge_batch_size_count"] - before["editjudge_batch_size_count"]
    ordered = sorted(latencies)
    return {"items": items, "wall_s": wall, "items_per_s": items / wall, "p50_s": statistics.median(ordered),
            "p95_s": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
            "mean_batch": (after["editjudge_batch_size_sum"] - before["editjudge_batch_size_sum"]) / batches
            if batches else 0.0, "errors": len(errors), "first_error": errors[0] if errors else None}


def main_(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--load" in argv:
        from reward_server_load import main_load  # noqa: E402 (bench/ is this script's folder)

        return main_load([a for a in argv if a != "--load"])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a config with a reward_model section (default: the tiny judge on the CPU)")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--requests", type=int, default=8, help="requests per client per round")
    parser.add_argument("--items", type=int, default=4, help="images per request")
    parser.add_argument("--image-size", type=int, default=64, help="side of the square test images, in pixels")
    parser.add_argument("--batch-size", type=int, default=16, help="the batching server's batch size")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="the batching server's max_wait_ms")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per configuration (best one kept)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                        help="OMP_NUM_THREADS of each server (default: this shell's, or 1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout per request, seconds")
    parser.add_argument("--out", default="bench_results", help="folder for server_bench.json")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]

    work = Path(tempfile.mkdtemp(prefix="editjudge-server-bench-"))
    config = Path(args.config) if args.config else work / "serve.yaml"
    if not args.config:
        from editjudge.tools.make_tiny_models import ensure_tiny_models

        cache = Path(os.environ.get("EDITJUDGE_CACHE", ROOT / ".cache" / "tiny-models"))
        judge = ensure_tiny_models(cache)["judge"]
        config.write_text(yaml.safe_dump({"reward_model": {"type": "qwen3_vl", "params": {
            "model_path": str(judge), "max_new_tokens": 12}}}))

    # The same bodies for both servers: client k's r-th request.
    most = max(counts)
    images = _images(most * args.requests * args.items, args.image_size, seed=0)
    payloads = [[RewardClient.build_payload(images[(k * args.requests + r) * args.items:
                                                   (k * args.requests + r + 1) * args.items], None, "brighten it")
                 for r in range(args.requests)] for k in range(most)]

    modes = {f"on (batch {args.batch_size}, {args.max_wait_ms:g} ms)": args.batch_size, "off (batch 1)": 1}
    servers = {name: ServerProcess(config, size, args.max_wait_ms, work / f"server-{size}.log", args.threads)
               for name, size in modes.items()}
    results: dict[tuple[str, int], dict] = {}
    try:
        for server in servers.values():
            server.wait_ready()
            RewardClient(server.url, retries=0, timeout=args.timeout).score_payload(payloads[0][0])  # warm-up
        rng = random.Random(0)
        for repeat in range(args.repeats):
            order = [(name, c) for c in counts for name in modes]
            rng.shuffle(order)
            for name, clients in order:
                figures = run_round(servers[name], clients, payloads, args.timeout)
                best = results.get((name, clients))
                if best is None or figures["items_per_s"] > best["items_per_s"]:
                    results[(name, clients)] = figures
                print(f"round {repeat + 1}/{args.repeats}: {name:<26} {clients:>3} clients: "
                      f"{figures['items_per_s']:7.1f} items/s, p50 {figures['p50_s'] * 1000:7.1f} ms, "
                      f"p95 {figures['p95_s'] * 1000:7.1f} ms, mean batch {figures['mean_batch']:.1f}", flush=True)
    finally:
        for server in servers.values():
            server.stop()

    on, off = list(modes)
    print(f"\n{args.items} images of {args.image_size}x{args.image_size} per request, {args.requests} requests per "
          f"client; best of {args.repeats} rounds")
    header = (f"{'clients':>7} | {'on items/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'batch':>6} | "
              f"{'off items/s':>11} {'p50 ms':>8} {'p95 ms':>8} | {'speed-up':>8}")
    print(header)
    print("-" * len(header))
    for clients in counts:
        a, b = results[(on, clients)], results[(off, clients)]
        print(f"{clients:>7} | {a['items_per_s']:>10.1f} {a['p50_s'] * 1000:>8.1f} {a['p95_s'] * 1000:>8.1f} "
              f"{a['mean_batch']:>6.1f} | {b['items_per_s']:>11.1f} {b['p50_s'] * 1000:>8.1f} "
              f"{b['p95_s'] * 1000:>8.1f} | {a['items_per_s'] / b['items_per_s']:>7.2f}x")
    failures = sum(r["errors"] for r in results.values())
    if failures:
        first = next(r["first_error"] for r in results.values() if r["errors"])
        print(f"warning: {failures} items failed; first: {first}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "server_bench.json").write_text(json.dumps(
        {"settings": vars(args), "results": [dict(mode=name, clients=c, **r) for (name, c), r in results.items()]},
        indent=2))
    print(f"wrote {out / 'server_bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
