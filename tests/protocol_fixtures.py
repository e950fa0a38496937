"""Stand-ins for tests/test_protocols.py: an ImgEdit checkout and benchmark in the upstream layout (our own
words, nothing of ImgEdit's text), and a small OpenAI-compatible chat server on 127.0.0.1 whose answers
depend on the prompt text alone."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import threading
from pathlib import Path

from PIL import Image

MODEL = "gpt-4o"
UNREADABLE = "UNREADABLE"  # an instruction holding it gets an answer without any "Name: N" line


def standin_checkout(folder: Path, word: str = "carefully") -> Path:
    """``folder/Benchmark/Basic/prompts.json`` in ImgEdit's layout: edit type -> prompt with ``<edit_prompt>``."""
    basic = folder / "Benchmark" / "Basic"
    basic.mkdir(parents=True, exist_ok=True)
    prompts = {kind: (f"Rate this {kind} edit {word}. Give three lines Name: N, N from 1 to 5.\n"
                      f"The request was: <edit_prompt>.\nFirst the before picture, then the after picture:\n")
               for kind in ("add", "remove", "extract")}
    (basic / "prompts.json").write_text(json.dumps(prompts, indent=2), encoding="utf-8")
    return folder


# key -> (edit type, instruction); "warp" has no prompt in the checkout, 108 has no edit on disk.
ITEMS = {"101": ("add", "add a red kite"), "102": ("add", "add two boats"), "103": ("add", f"add a {UNREADABLE} hat"),
         "104": ("remove", "remove the lamp"), "105": ("remove", "remove the fence"),
         "106": ("extract", "extract the cat"), "107": ("extract", f"extract the {UNREADABLE} cup"),
         "108": ("extract", "extract the dog"), "109": ("warp", "warp the road"), "110": ("remove", "remove a sign")}
NO_EDIT = "108"


def standin_benchmark(folder: Path) -> tuple[Path, Path]:
    """``basic_edit.json`` with JPEG sources under ``singleturn/``, and a folder of edits ``<key>.png``."""
    edits = folder / "edits"
    edits.mkdir(parents=True)
    records = {}
    for n, (key, (kind, instruction)) in enumerate(ITEMS.items()):
        source = folder / "singleturn" / kind / f"{key}.jpg"
        source.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48 + 8 * n, 40), (20 * n, 200 - 15 * n, 90)).save(source)
        if key != NO_EDIT:
            Image.new("RGB", (40, 48 + 4 * n), (250 - 20 * n, 30, 10 * n)).save(edits / f"{key}.png")
        records[key] = {"id": f"{kind}/{key}.jpg", "prompt": instruction, "edit_type": kind}
    (folder / "basic_edit.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
    return folder / "basic_edit.json", edits


def answer_for(prompt: str) -> str:
    """The fake judge's answer: fixed by the prompt text alone (integers from its SHA-256), with lines
    that a reader of "Name: N" lines must skip (three parts, no space, words after the number)."""
    if UNREADABLE in prompt:
        return "Brief reasoning: hard to say.\nVerdict: unsure\nScore:4"
    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    return "\n".join([f"Brief reasoning: looks fine: {h[4] % 9} details", f"Alpha: {1 + h[0] % 5}",
                      f"  Beta: {1 + h[1] % 5}  ", f"Gamma and more: {1 + h[2] % 5}", "Note:5",
                      f"Delta: {1 + h[3] % 5} of 5"])


def first_text(body: dict) -> str:
    """The text of the request's first text part (its last message)."""
    return next(p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text")


def sent_image_sizes(body: dict) -> list[tuple[int, int]]:
    """The (width, height) of every image a chat request sent, in the order sent."""
    parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
    return [Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]))).size
            for p in parts if p["type"] == "image_url"]


class FakeChat:
    """``GET /v1/models`` lists ``model`` (default ``MODEL``); ``POST /v1/chat/completions`` answers ``answer(body)`` (default:
    ``answer_for`` the text of the request's first text part; a dict: the whole choice, e.g. with its
    ``logprobs``; None: a 500 error, a failed request), and keeps every body in ``bodies``, in the order
    received."""

    def __init__(self, answer=None, model: str = MODEL) -> None:
        self.bodies: list[dict] = []
        self.model = model
        self.answer = answer or (lambda body: answer_for(first_text(body)))
        chat = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, payload: dict, status: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"data": [{"id": chat.model}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat.bodies.append(body)
                reply = chat.answer(body)
                if reply is None:
                    self._send({"error": {"message": "the fake server fails this one"}}, 500)
                    return
                choice = reply if isinstance(reply, dict) else {
                    "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                self._send({"model": chat.model, "choices": [choice],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeChat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
