"""The judge on vLLM servers that editjudge starts and stops itself (``reward_model.type: vllm``).

    make vllm                      # builds .venv-vllm once (vLLM pins its own torch and transformers)
    reward_model:
      type: vllm
      devices: [cuda:0, cuda:2]    # one worker and one server per entry (data parallel) ...
      params:
        model_path: Qwen/Qwen3-VL-8B-Instruct
        tensor_parallel_size: 2    # ... each server on this many GPUs from its entry on: 0-1 and 2-3
                                   # (placement.vllm_placement; devices: auto takes every GPU, 2 at a time)

Each score worker starts one ``python -m vllm.entrypoints.openai.api_server`` from ``.venv-vllm``
on 127.0.0.1 and a free port, with a random API key of its own, waits until ``/health`` answers
(``ready_timeout``), and then scores exactly like ``type: openai`` (whose docstring has the rest).
The server's log is ``OUT/logs/vllm-<device>.log``. The server runs in its own process group and
is stopped by its PID (SIGTERM, then SIGKILL) on ``close()``, at interpreter exit, and, through
the parent-death signal, when editjudge itself is killed. A server that dies mid-run is a
``JudgeServerError`` naming its log: finished work is kept and the same command resumes.
``base_url`` is not accepted here: to attach to servers already running, use ``type: openai``.
"""

from __future__ import annotations

import atexit
import ctypes
import inspect
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

from .identity import answer_settings, backend_identity, environment_versions, weights_fingerprint
from .openai_judge import OpenAIRewardModel, signature_defaults
from .placement import ServerPlacement, vllm_placement
from .remote import LOOPBACK_OPENER, JudgeServerError

logger = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[3]
LOG_TAIL_LINES = 30
STOP_GRACE_SECONDS = 20
_PR_SET_PDEATHSIG = 1
# Requests in flight per server: enough to keep vLLM's continuous batching full (its default
# max_num_seqs is 256 on GPUs; the score stage sends a chunk of batch_size x 4 items at a time).
DEFAULT_MAX_CONCURRENT = 64
# Images one request may hold: the source and two edits (a pairwise request; a rubric prompt with_source
# sends two). A limit on what the server admits, never on what it answers to a request it admits: started
# apart from ``server_flags``, so it is not part of the judge's identity (raising it rescores nothing).
MAX_IMAGES_PER_PROMPT = 3


def default_python() -> str:
    """The vLLM environment's python: $EDITJUDGE_VLLM_PYTHON, else ./.venv-vllm, else the checkout's."""
    if os.environ.get("EDITJUDGE_VLLM_PYTHON"):
        return os.environ["EDITJUDGE_VLLM_PYTHON"]
    for root in (Path.cwd(), CHECKOUT):
        candidate = root / ".venv-vllm" / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return str(Path(".venv-vllm") / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux)
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def server_flags(settings: dict, dtype: str) -> list[str]:
    """The flags a server for ``settings`` (``VLLMRewardModel.identity_of``'s) starts with, ``dtype``
    resolved or as given; the speed-only ``--gpu-memory-utilization`` and the admission limit
    ``--limit-mm-per-prompt`` (``admission_flags``) are added apart."""
    pixels = {k: settings[k] for k in ("min_pixels", "max_pixels") if settings.get(k) is not None}
    args = ["--dtype", dtype, "--max-logprobs", "20", "--seed", "0"]
    if settings.get("max_model_len") is not None:
        args += ["--max-model-len", str(settings["max_model_len"])]
    if pixels:  # the server's processor resizes exactly like the transformers judge
        args += ["--mm-processor-kwargs", json.dumps(pixels)]
    return args + list(settings.get("server_args") or [])


def admission_flags() -> list[str]:
    """What a server admits, not how it answers: up to ``MAX_IMAGES_PER_PROMPT`` images, no video."""
    return ["--limit-mm-per-prompt", json.dumps({"image": MAX_IMAGES_PER_PROMPT, "video": 0})]


def _placement(device, tensor_parallel_size: int) -> ServerPlacement:
    """Where this worker's server runs (``placement.vllm_placement``); ``auto``: the first server of
    ``devices: auto`` (GPUs 0 .. tensor_parallel_size-1, or the CPU)."""
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device == "auto":
        import torch

        return vllm_placement("auto", tensor_parallel_size, inherited, torch.cuda.device_count())[0]
    return vllm_placement([device], tensor_parallel_size, inherited)[0]


class VLLMServer:
    """One vLLM OpenAI-compatible server process, owned by this object."""

    def __init__(self, python: str, model_path: str, placement: ServerPlacement | str, log_path: Path,
                 args: list[str]) -> None:
        if not isinstance(placement, ServerPlacement):  # a device name: placed as a lone server on it
            placement = vllm_placement([placement], 1, os.environ.get("CUDA_VISIBLE_DEVICES"))[0]
        self.placement = placement
        self.port = free_port()
        self.api_key = secrets.token_hex(16)
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
                   "--served-model-name", model_path, "--host", "127.0.0.1", "--port", str(self.port),
                   "--tensor-parallel-size", str(placement.tensor_parallel_size), *args]
        env = dict(os.environ, VLLM_API_KEY=self.api_key, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # editjudge's path must not leak into vLLM's environment
        if placement.on_gpu:
            env.update(placement.env)  # the server's physical GPUs (ours mapped through our CUDA_VISIBLE_DEVICES)
        else:
            for key, value in placement.env.items():
                env.setdefault(key, value)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        logger.info("starting vLLM for %s on %s, port %d (log: %s)", model_path, placement.label, self.port, log_path)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, preexec_fn=_die_with_parent)
        self.pid = self.process.pid
        logger.info("vLLM server pid %d", self.pid)
        atexit.register(self.stop)

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise JudgeServerError(f"the vLLM server (pid {self.pid}) exited with status {code} mid-run; its log is "
                                   f"{self.log_path}. Finished work is kept: rerun the same command to resume. "
                                   f"Last lines of the log:\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JudgeServerError(f"the vLLM server exited with status {self.process.returncode} while starting; "
                                       f"its log is {self.log_path}. Last lines:\n{self.log_tail()}")
            try:
                with LOOPBACK_OPENER.open(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
                    if response.status == 200:
                        logger.info("vLLM server ready on port %d after %.1f s", self.port, time.monotonic() - started)
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise JudgeServerError(f"the vLLM server was not ready after {timeout:g} s (ready_timeout); its log is "
                               f"{self.log_path}. Last lines:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (its PID), SIGKILL after a grace period."""
        if self.process.poll() is None:
            logger.info("stopping the vLLM server (pid %d)", self.pid)
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        else:
            try:  # the server is gone; its engine processes may not be
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not self._log.closed:
            self._log.close()
        atexit.unregister(self.stop)


class VLLMRewardModel(OpenAIRewardModel):
    """``OpenAIRewardModel`` on a vLLM server started (and stopped) by this object."""

    # Where its server runs and how requests reach it (tensor parallelism, like a device, may move the
    # last bits of a float, never the tokens of an answer on the tests' judges).
    speed_params = OpenAIRewardModel.speed_params - {"base_url", "api_key_env"} | {"python", "ready_timeout", "tensor_parallel_size",
                                                     "gpu_memory_utilization"}
    # What computes its numbers, in the vLLM environment (read there, not imported here).
    libraries = ("vllm", "torch", "transformers", "pillow")

    def __init__(self, model_path: str, device: str | list[str] = "cpu", dtype: str = "auto",
                 max_model_len: int | None = 4096, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float | None = None, server_args: list[str] | None = None,
                 python: str | None = None, ready_timeout: float = 600.0, output_dir: str | None = None,
                 max_concurrent: int = DEFAULT_MAX_CONCURRENT, **kwargs) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        self.model_path = str(model_path)
        self.server = None
        kwargs["max_concurrent"] = max_concurrent
        placement = _placement(device, tensor_parallel_size)
        super().__init__(model=self.model_path, base_url="http://127.0.0.1:1/v1", output_dir=output_dir,
                         device=device if isinstance(device, str) else "+".join(device), **kwargs)
        self._given = {**given, **kwargs}  # for identity(); the parent's holds the placeholder base_url
        # The server's processor resizes exactly like the transformers judge; the client sends images as they are.
        self.min_pixels = self.max_pixels = None
        self.server_command_args = server_flags(self.identity_of(self._given)["settings"],
                                                self.resolved_settings(self._given, device)["dtype"])
        throughput = admission_flags()
        if gpu_memory_utilization is not None:
            throughput += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
        self._identity = None
        logs = Path(output_dir) / "logs" if output_dir else Path("logs")
        label = placement.device if isinstance(placement.device, str) else "+".join(placement.device)
        self.server = VLLMServer(python or default_python(), self.model_path, placement,
                                 logs / f"vllm-{label.replace(':', '')}.log", self.server_command_args + throughput)
        try:
            self.server.wait_ready(ready_timeout)
        except BaseException:
            self.server.stop()
            raise
        self.base_urls = [self.server.base_url]
        self.client.base_urls = [self.server.base_url]
        self.client._api_key = self.server.api_key

    @classmethod
    def defaults(cls) -> dict:
        inherited = {k: v for k, v in OpenAIRewardModel.defaults().items() if k not in ("base_url", "api_key_env")}
        return {**inherited, **signature_defaults(VLLMRewardModel.__init__)}

    @classmethod
    def identity_of(cls, params: dict) -> dict:
        """Everything that can change the server's answers (``reward.identity``): every setting but the
        speed-only ones (defaults filled in), the flags its server starts with (``server_flags``: the
        pixel bounds, ``max_model_len``, ``server_args`` ...; ``dtype`` as given), the weights' SHA-256 and
        the versions of vLLM, torch, transformers and Pillow in the vLLM environment. The response cache is
        keyed by it with the request body, so a change that makes the stage rescore also misses the cache."""
        settings = answer_settings(params, cls.speed_params, cls.defaults())
        python = params.get("python") or default_python()
        return backend_identity("vllm", settings, weights=weights_fingerprint(settings["model_path"]),
                                libraries=environment_versions(python, cls.libraries),
                                server_flags=server_flags(settings, settings["dtype"]))

    @classmethod
    def resolved_settings(cls, params: dict, device) -> dict:
        """``dtype: auto``: float32 for a server on the CPU, the checkpoint's own on GPUs."""
        dtype = params.get("dtype", "auto")
        if dtype == "auto" and not _placement(device, params.get("tensor_parallel_size", 1)).on_gpu:
            dtype = "float32"
        return {"dtype": dtype}

    def identity(self) -> dict:
        return dict(self.identity_of(self._given), resolved=self.resolved_settings(self._given, self._given["device"]))

    @classmethod
    def config_problems(cls, params: dict) -> list[str]:
        own = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        inherited = set(inspect.signature(OpenAIRewardModel.__init__).parameters) - {
            "self", "model", "base_url", "api_key_env"}
        accepted = own | inherited
        problems = []
        unknown = sorted(set(params) - accepted)
        if unknown:
            hint = " (to attach to running servers use type: openai with base_url)" if "base_url" in unknown else ""
            problems.append(f"unknown keys {unknown}{hint} (accepted: {', '.join(sorted(accepted))})")
        path = params.get("model_path")
        if not isinstance(path, str) or not path:
            problems.append("model_path: required, a local folder or a hub id")
        elif path.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(path)):
            problems.append(f"model_path: local folder {path} does not exist")
        python = params.get("python") or default_python()
        if not os.path.exists(python):
            problems.append(f"python: the vLLM environment's python {python} does not exist; build it with "
                            "`make vllm` (or set python / $EDITJUDGE_VLLM_PYTHON)")
        tp = params.get("tensor_parallel_size", 1)
        if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
            problems.append(f"tensor_parallel_size must be a positive integer, got {tp!r}")
        memory = params.get("gpu_memory_utilization")
        if memory is not None and not (isinstance(memory, (int, float)) and not isinstance(memory, bool)
                                       and 0 < memory <= 1):
            problems.append(f"gpu_memory_utilization must be null (vLLM's 0.9) or a fraction in (0, 1], got {memory!r}")
        args = params.get("server_args")
        if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            problems.append(f"server_args must be a list of strings (extra vLLM server flags), got {args!r}")
        timeout = params.get("ready_timeout", 600)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            problems.append(f"ready_timeout must be a positive number of seconds, got {timeout!r}")
        problems.extend(super().setting_problems({k: v for k, v in params.items() if k in inherited}))
        return problems

    def _alive(self) -> None:
        if self.server is not None:
            self.server.check_alive()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __del__(self) -> None:  # pragma: no cover - a safety net; close() is the contract
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _main() -> None:  # pragma: no cover - a manual check: python -m editjudge.models.reward.vllm_judge MODEL
    logging.basicConfig(level=logging.INFO)
    judge = VLLMRewardModel(sys.argv[1], output_dir="outputs/vllm-check")
    try:
        print(judge.client.get("/models"))
    finally:
        judge.close()


if __name__ == "__main__":  # pragma: no cover
    _main()
