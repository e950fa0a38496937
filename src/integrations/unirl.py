"""UniRL's reward service (github.com/Tencent-Hunyuan/UniRL), answered by ``editjudge serve``.

Read against unirl/reward/remote.py (commit 1a7b501): its RemoteRewardBackend checks
``GET /health`` for ``{"status": "ok", "rewards": {name: [...]}}`` holding every required reward,
then ``POST /score``s ``{"requests": [{"history": [{"text", "image_b64"}, ...], "required_rewards":
[...], "metadata": ...}]}``: one turn for text-to-image, two for an edit (the condition image, then
the generated one, each turn's text the prompt). It reads ``results[i][reward][sub_metric]``
(reduced by ``sub_metric_reduce``, ``first`` by default) and ``errors[i][reward]``; a reward missing
without an error, or a non-finite sub-metric, fails the sample. This module translates both ways
and serves the translation on 127.0.0.1::

    EDITJUDGE_URL=http://127.0.0.1:8000 python -m editjudge.integrations.unirl --port 8100
    # UniRL: base_url: http://127.0.0.1:8100, required_rewards: [editjudge], image_format: PNG

``score`` is each result's first sub-metric (then the rubric's sub-scores). UniRL sends JPEG
(quality 95) unless ``image_format: PNG``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..client import RewardClient, RewardServerError
from .env import client_from_env

NAME = "editjudge"


def to_editjudge(body: dict) -> tuple[dict, list[int], list[dict]]:
    """The editjudge v1 payload for the samples of a UniRL ``/score`` body that ask for ``editjudge``;
    which samples those are; and each sample's errors so far (other rewards, unusable histories)."""
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise ValueError("body: 'requests' must be a list")
    items, asked, errors = [], [], [{} for _ in requests]
    for i, request in enumerate(requests):
        names = request.get("required_rewards") or []
        for name in names:
            if name != NAME:
                errors[i][name] = f"not served here (this service scores {NAME!r})"
        if NAME not in names:
            continue
        history = request.get("history") or []
        if len(history) not in (1, 2) or not all(isinstance(t, dict) and t.get("image_b64") for t in history):
            errors[i][NAME] = f"history must hold one or two turns with image_b64, got {len(history)}"
            continue
        item = {"edited": history[-1]["image_b64"], "instruction": str(history[-1].get("text") or "")}
        if len(history) == 2:
            item["source"] = history[0]["image_b64"]
        items.append(item)
        asked.append(i)
    return {"version": 1, "items": items}, asked, errors


def to_unirl(answer: dict, asked: list[int], errors: list[dict]) -> dict:
    """UniRL's ``{"results": [...], "errors": [...]}`` from editjudge's answer for the samples ``asked``."""
    results: list[dict] = [{} for _ in errors]
    for i, line in zip(asked, answer["results"]):
        score = line.get("score")
        if score is None:
            errors[i][NAME] = line.get("error") or "no score"
            continue
        subs = {k: float(v) for k, v in (line.get("sub_scores") or {}).items()
                if isinstance(v, (int, float)) and math.isfinite(v) and k != "score"}
        results[i][NAME] = {"score": float(score), **subs}
    return {"results": results, "errors": errors}


def score(client: RewardClient, body: dict) -> dict:
    payload, asked, errors = to_editjudge(body)
    if not asked:
        return to_unirl({"results": []}, asked, errors)
    return to_unirl(client.score_payload(payload), asked, errors)


def make_server(client: RewardClient, port: int = 0) -> ThreadingHTTPServer:
    """The translation served on 127.0.0.1:``port`` (0: any free port)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path != "/health":
                return self._answer(404, {"error": "not found"})
            try:
                client.health()
            except RewardServerError as exc:
                return self._answer(503, {"status": "unavailable", "error": str(exc)})
            self._answer(200, {"status": "ok", "rewards": {NAME: ["ready"]}})

        def do_POST(self):
            if self.path != "/score":
                return self._answer(404, {"error": "not found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self._answer(200, score(client, body))
            except (ValueError, AttributeError, TypeError) as exc:
                self._answer(422, {"error": f"{type(exc).__name__}: {exc}"})
            except RewardServerError as exc:
                self._answer(502, {"error": str(exc)})

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    try:
        client = client_from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = make_server(client, args.port)
    print(f"UniRL reward service on http://127.0.0.1:{server.server_address[1]} -> {client.url}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
