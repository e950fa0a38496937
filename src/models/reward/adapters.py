"""LoRA judges: a PEFT adapter loaded onto the base judge (``adapter_path`` in ``reward_model.params``).

    reward_model:
      params:
        model_path: /models/Qwen2.5-VL-7B-Instruct
        adapter_path: /models/editscore-lora     # a PEFT folder: adapter_config.json + adapter weights
        merge_adapter: true                      # fold the LoRA weights into the base (faster; optional)

Needs the ``lora`` extra (``pip install 'editjudge[lora]'``, i.e. peft). Unmerged, the LoRA layers
stay in the base model's modules (``PeftModel.get_base_model()``), so everything that hooks or
calls the transformers model (generation, the forward clock) sees the adapted model. The adapter
is part of what decides a score: ``adapter_fingerprint`` (its config and weights' SHA-256) goes
into the scoring settings hash, so changed adapter weights at the same path rescore.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _is_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or os.path.isabs(path) or os.path.isdir(path)


def adapter_problems(values: dict) -> list[str]:
    """Problems with ``adapter_path`` / ``merge_adapter`` (only the keys present are checked)."""
    problems = []
    path = values.get("adapter_path")
    merge = values.get("merge_adapter", False)
    if not isinstance(merge, bool):
        problems.append(f"merge_adapter must be true or false, got {merge!r}")
    if path is None:
        if merge is True:
            problems.append("merge_adapter needs adapter_path (the PEFT adapter to merge)")
        return problems
    if not isinstance(path, str) or not path:
        problems.append(f"adapter_path must be a PEFT adapter folder or hub id, got {path!r}")
        return problems
    if _is_local(path):
        folder = Path(os.path.expanduser(path))
        if not folder.is_dir():
            problems.append(f"adapter_path: local folder {path} does not exist")
        elif not (folder / ADAPTER_CONFIG).is_file():
            problems.append(f"adapter_path: {path} has no {ADAPTER_CONFIG} (not a PEFT adapter folder)")
    if importlib.util.find_spec("peft") is None:
        problems.append("adapter_path needs the peft package, which is not installed (pip install 'editjudge[lora]')")
    if values.get("quantization") is not None and merge is not True:
        problems.append("quantization with an unmerged adapter is not supported: set merge_adapter: true")
    return problems


def load_adapter(model, adapter_path: str, merge: bool = False):
    """``model`` with the PEFT adapter at ``adapter_path`` applied (merged into its weights if ``merge``)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, adapter_path, is_trainable=False)
    if merge:
        merged = peft_model.merge_and_unload()
        logger.info("merged the adapter %s into the base model", adapter_path)
        return merged
    logger.info("loaded the adapter %s (unmerged)", adapter_path)
    return peft_model.get_base_model()


def adapter_fingerprint(adapter_path: str) -> str:
    """SHA-256 of a local adapter's config and weight files; a hub id is keyed by its name alone."""
    folder = Path(os.path.expanduser(adapter_path))
    if not folder.is_dir():
        return f"hub:{adapter_path}"
    digest = hashlib.sha256()
    files = [folder / ADAPTER_CONFIG] + sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
    for file in files:
        if file.is_file():
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
