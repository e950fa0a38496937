"""One process per judge replica: a transformers judge's replicas each in their own interpreter.

Eight replicas in one process share one interpreter lock: the processor's Python work, the answers'
decoding and the batch's glue run one replica at a time. With more than one replica of a judge that
computes in this process (``runs_in_process``: the transformers backend; the vLLM and API judges
only wait on HTTP), ``editjudge serve`` starts each replica as ``python -m editjudge.serve.replica``,
as the job starts a worker per device, and its judge thread waits on the replica's socket instead.

The wire is a socket pair, never pickle: a message is a 4-byte length, a JSON header naming the
lengths of the binary parts that follow (raw RGB pixels: ``tobytes`` and ``frombytes``, no encoding).
The child loads the judge with ``build_judge`` from the same ``reward_model`` configuration, so its
rubric and parameters are the job's; it dies with the server (``PR_SET_PDEATHSIG``, and end of file
on its socket).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading

from PIL import Image

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")


class ReplicaGone(RuntimeError):
    """The replica's process exited or its socket closed."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 22))
        if not chunk:
            raise ReplicaGone("the replica's socket closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send(sock: socket.socket, header: dict, parts: list[bytes] = ()) -> None:
    head = json.dumps({**header, "parts": [len(p) for p in parts]}).encode()
    sock.sendall(_LENGTH.pack(len(head)) + head)
    for part in parts:
        sock.sendall(part)


def receive(sock: socket.socket) -> tuple[dict, list[bytes]]:
    (length,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size))
    header = json.loads(_recv_exact(sock, length))
    return header, [_recv_exact(sock, n) for n in header.pop("parts")]


def _pack_images(images: list) -> tuple[list, list[bytes]]:
    """Each image (a PIL image, or None) as [mode, width, height] and its pixels; paths as they are."""
    meta, parts = [], []
    for image in images:
        if isinstance(image, Image.Image):
            meta.append([image.mode, image.width, image.height])
            parts.append(image.tobytes())
        else:
            meta.append(None if image is None else str(image))
    return meta, parts


def _unpack_images(meta: list, parts: list[bytes]) -> list:
    blobs, images = iter(parts), []
    for entry in meta:
        if isinstance(entry, list):
            mode, width, height = entry
            images.append(Image.frombytes(mode, (width, height), next(blobs)))
        else:
            images.append(entry)
    return images


class ReplicaProcess:
    """A judge replica in a child process; the parent's judge thread calls ``judge`` as it would
    ``judge_items`` on a local judge. One call at a time."""

    def __init__(self, reward_model, device, name: str = "replica") -> None:
        self.device, self.name = device, name
        parent, child = socket.socketpair()
        self._sock, self._lock, self._hello = parent, threading.Lock(), None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "editjudge.serve.replica", str(child.fileno())], pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), preexec_fn=_die_with_parent)
        child.close()
        send(self._sock, {"op": "load", "reward_model": dataclasses.asdict(reward_model), "device": device})

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> dict:
        """The child's answer to loading (raises with the child's reason when the judge failed to load).
        Once known it is answered without the lock, which a batch holds while it scores: the server asks
        (``compare_with_original``) on its event loop for every request and ``/health``."""
        if self._hello is None:
            with self._lock:
                if self._hello is None:
                    self._hello = self._answer()
        return self._hello

    @property
    def compare_with_original(self) -> bool:
        return bool(self.wait_ready()["compare_with_original"])

    def _answer(self) -> dict:
        try:
            header, parts = receive(self._sock)
        except (ReplicaGone, OSError) as exc:
            code = self.process.poll()
            raise ReplicaGone(f"judge replica {self.name} (pid {self.pid}) is gone"
                              + (f" (exit status {code})" if code is not None else f": {exc}")) from None
        if header.get("error"):
            raise RuntimeError(f"judge replica {self.name}: {header['error']}")
        if parts:
            header["parts"] = parts
        return header

    def _call(self, header: dict, parts: list[bytes] = ()) -> dict:
        self.wait_ready()
        with self._lock:
            try:
                send(self._sock, header, parts)
            except OSError:
                pass  # the answer's read says why
            return self._answer()

    def _alive(self) -> None:
        """Raises when the child has exited (the health probe's first question)."""
        code = self.process.poll()
        if code is not None:
            raise ReplicaGone(f"judge replica {self.name} (pid {self.pid}) exited with status {code}")

    def judge(self, images: list, instructions: list[str], sources: list) -> list[dict]:
        edited_meta, edited_parts = _pack_images(images)
        source_meta, source_parts = _pack_images(sources)
        return self._call({"op": "score", "edited": edited_meta, "sources": source_meta,
                           "instructions": list(instructions)}, edited_parts + source_parts)["results"]

    def sleep(self, level: int) -> str:
        return self._call({"op": "sleep", "level": level})["how"]

    def wake(self) -> None:
        self._call({"op": "wake"})

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                with self._lock:
                    send(self._sock, {"op": "close"})
            except OSError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._sock.close()


def _die_with_parent() -> None:  # in the child between fork and exec (Linux)
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _serve(sock: socket.socket) -> None:
    from ..config_types import RewardModelConfig
    from ..models.reward.judge import build_judge, judge_items
    from .sleep import sleep_model, wake_model

    header, _ = receive(sock)
    try:
        model, rubric = build_judge(RewardModelConfig(**header["reward_model"]), header["device"], quiet=True)
    except Exception as exc:  # noqa: BLE001 - the parent reports it and the server stops
        logger.exception("the judge failed to load")
        send(sock, {"error": f"{type(exc).__name__}: {exc}"})
        return
    send(sock, {"pid": os.getpid(), "compare_with_original": bool(getattr(model, "compare_with_original", False))})
    while True:
        try:
            header, parts = receive(sock)
        except ReplicaGone:
            break  # the server is gone
        op = header["op"]
        try:
            if op == "close":
                break
            if op == "score":
                n = sum(1 for m in header["edited"] if isinstance(m, list))
                edited = _unpack_images(header["edited"], parts[:n])
                sources = _unpack_images(header["sources"], parts[n:])
                answer = {"results": judge_items(model, rubric, edited, header["instructions"], sources)}
            elif op == "sleep":
                answer = {"how": sleep_model(model, header["level"])}
            elif op == "wake":
                wake_model(model)
                answer = {}
            else:
                answer = {"error": f"unknown operation {op!r}"}
        except Exception as exc:  # noqa: BLE001 - the parent's judge thread records it per item
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        send(sock, answer)
    close = getattr(model, "close", None)
    if callable(close):
        close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("editjudge.models.reward").setLevel(logging.WARNING)
    with socket.socket(fileno=int(argv[0])) as sock:
        _serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
