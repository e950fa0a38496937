"""Sharing the GPUs with the trainer: a judge replica put to sleep and woken.

* the vLLM judge (``type: vllm``): its vLLM server's sleep mode, ``POST /sleep?level=N`` and
  ``POST /wake_up``. Level 1 moves the weights to CPU memory and drops the KV cache; level 2 drops
  the weights too (a wake reloads them). The server must run with ``--enable-sleep-mode`` (in
  ``reward_model.params.server_args``) and ``VLLM_SERVER_DEV_MODE=1`` (set by ``editjudge serve``
  when that flag is there); vLLM offers sleep mode on CUDA and ROCm only.
* the transformers judge: every parameter and buffer moved to CPU memory (each one's device
  remembered, so a model spread over several GPUs comes back as it was) and the CUDA cache emptied;
  a wake moves them back. Level 2 is taken as level 1 here (the weights stay in CPU memory).
"""

from __future__ import annotations

import json
import urllib.request

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SleepError(RuntimeError):
    """The judge could not be put to sleep or woken."""


def _vllm_call(server, path: str) -> dict:
    root = server.base_url.removesuffix("/v1")
    request = urllib.request.Request(root + path, data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {server.api_key}"})
    try:
        with _DIRECT.open(request, timeout=600) as response:
            text = response.read().decode() or "{}"
    except OSError as exc:
        code = getattr(exc, "code", None)
        hint = (" (start vLLM with --enable-sleep-mode in reward_model.params.server_args; "
                "VLLM_SERVER_DEV_MODE=1 exposes /sleep)") if code == 404 else ""
        raise SleepError(f"vLLM server {root}{path}: {exc}{hint}") from None
    try:
        return json.loads(text)
    except ValueError:
        return {"answer": text}


def _torch_module(model):
    module = getattr(model, "model", None)
    return module if module is not None and hasattr(module, "named_parameters") else None


def sleep_model(model, level: int) -> str:
    """Free the replica's accelerator memory; returns how (``vllm`` or ``offload``)."""
    from .replica import ReplicaProcess

    if isinstance(model, ReplicaProcess):
        return model.sleep(level)
    server = getattr(model, "server", None)
    if server is not None and hasattr(server, "base_url"):
        _vllm_call(server, f"/sleep?level={level}")
        return "vllm"
    module = _torch_module(model)
    if module is None:
        raise SleepError(f"{type(model).__name__} cannot sleep (neither a vLLM server nor a torch model)")
    import torch

    placement = {}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        placement[name] = tensor.device
        tensor.data = tensor.data.to("cpu")
    model._editjudge_placement = placement
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return "offload"


def wake_model(model) -> None:
    from .replica import ReplicaProcess

    if isinstance(model, ReplicaProcess):
        model.wake()
        return
    server = getattr(model, "server", None)
    if server is not None and hasattr(server, "base_url"):
        _vllm_call(server, "/wake_up")
        return
    module = _torch_module(model)
    placement = getattr(model, "_editjudge_placement", None)
    if module is None or placement is None:
        raise SleepError(f"{type(model).__name__} was not put to sleep here")
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        tensor.data = tensor.data.to(placement[name])
    model._editjudge_placement = None
