"""Where a model comes from: a local folder or a Hugging Face hub id, checked before any work starts.

    problem = model_files_problem("Qwen/Qwen3-VL-8B-Instruct", JUDGE_FILES, "reward_model.params.model_path")

A hub id is looked up in the local HF cache first. When it is not there: with ``HF_HUB_OFFLINE`` set
that is the problem; otherwise the hub is probed once per process (one TCP connect, a few seconds at
most, instead of the hub client's retries) and, when it answers, only the small files are fetched.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import urllib.parse
from pathlib import Path

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT_S = 3.0


def is_hub_id(value: str) -> bool:
    """``owner/name`` that is not an existing path (a relative path that exists is a folder)."""
    return (value.count("/") == 1 and not value.startswith((".", "/", "~")) and not os.path.isabs(value)
            and not Path(value).exists())


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.cache
def network_problem() -> str | None:
    """None when the hub's endpoint accepts a connection; else why not. Probed once per process."""
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=NETWORK_TIMEOUT_S):
            return None
    except OSError as exc:
        problem = (f"no network: cannot reach {constants.ENDPOINT} ({type(exc).__name__}: {exc}); download the "
                   "model first (e.g. `hf download`) and set HF_HUB_OFFLINE=1, or use a local folder")
        logger.warning("%s", problem)
        return problem


def _missing(names_present, groups: tuple[tuple[str, ...], ...]) -> list[str]:
    return [" or ".join(group) for group in groups if not any(name in names_present for name in group)]


def model_files_problem(model_path: str, groups: tuple[tuple[str, ...], ...], what: str) -> str | None:
    """Whether ``model_path`` (folder or hub id) has one file of each group of alternatives; None if so."""
    path = Path(model_path).expanduser()
    if path.is_dir():
        missing = _missing({p.name for p in path.iterdir()}, groups)
        return f"{path} lacks {', '.join(missing)}" if missing else None
    if not is_hub_id(model_path):
        return f"local folder {model_path} does not exist ({what} takes a local folder or a hub id such as owner/name)"
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = {name for group in groups for name in group
                  if isinstance(try_to_load_from_cache(model_path, name), str)}
    except ValueError as exc:  # not a valid repo id
        return f"{model_path} is not a local folder nor a valid hub id ({exc})"
    missing = _missing(cached, groups)
    if not missing:
        return None
    if offline():
        return (f"{model_path} is neither a local folder nor in the Hugging Face cache (missing "
                f"{', '.join(missing)}), and HF_HUB_OFFLINE is set: download it first (e.g. `hf download "
                f"{model_path}`) or use a local folder")
    problem = network_problem()
    if problem:
        return f"{model_path} is not in the Hugging Face cache and there is {problem}"
    try:
        from huggingface_hub import list_repo_files

        files = set(list_repo_files(model_path))
    except Exception as exc:  # no such repo, gated, network: all mean the model cannot load
        return f"cannot list {model_path} on the hub: {type(exc).__name__}: {exc}"
    missing = _missing(files, groups)
    return f"{model_path} on the hub lacks {', '.join(missing)}" if missing else None
