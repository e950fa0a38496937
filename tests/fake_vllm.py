"""A stand-in for ``python -m vllm.entrypoints.openai.api_server``: the vLLM judge's placement and cache
tested without vLLM or GPUs.

``fake_python(folder, log)`` writes an executable that the vLLM judge can take as its ``python``: it
serves ``/health``, ``/v1/models`` and ``/v1/chat/completions`` (every answer ``{"score": 5}``) on the
port it is given, and appends one JSON line per start (its arguments and CUDA/vLLM environment) and
per chat request (its body, the messages as their SHA-256) to ``log``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sys
from pathlib import Path


def fake_python(folder: Path, log: Path) -> str:
    """An executable that runs this file as the vLLM server, logging to ``log``."""
    path = Path(folder) / "fake-vllm-python"
    path.write_text(f"#!/bin/sh\nshift 2\nEDITJUDGE_FAKE_VLLM_LOG={log} exec {sys.executable} {__file__} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def events(log: Path, kind: str) -> list[dict]:
    if not Path(log).exists():
        return []
    return [e for e in map(json.loads, Path(log).read_text().splitlines()) if e["event"] == kind]


def _record(entry: dict) -> None:
    with open(os.environ["EDITJUDGE_FAKE_VLLM_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def main(argv: list[str]) -> None:
    port = int(argv[argv.index("--port") + 1])
    model = argv[argv.index("--served-model-name") + 1]
    key = os.environ.get("VLLM_API_KEY")
    _record({"event": "start", "argv": argv, "env": {k: v for k, v in os.environ.items()
                                                     if k.startswith(("CUDA_", "VLLM_CPU"))}})

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {})
            else:
                self._send(200, {"data": [{"id": model}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.headers.get("Authorization") != f"Bearer {key}":
                return self._send(401, {"error": "bad key"})
            messages = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
            _record({"event": "request", "body": {k: v for k, v in body.items() if k != "messages"},
                     "messages_sha256": messages})
            self._send(200, {"model": model, "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                             "choices": [{"message": {"content": '{"score": 5}'}, "finish_reason": "stop"}]})

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
