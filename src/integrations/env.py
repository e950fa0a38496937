"""What every trainer integration reads from the environment, checked once, with clear errors.

``EDITJUDGE_URL``           the reward server (default ``http://127.0.0.1:8000``)
``EDITJUDGE_DATASET_ROOT``  the folder the trainer's dataset names its source images against
``EDITJUDGE_SERVER_TOKEN``  the server's bearer token (read by :class:`editjudge.client.RewardClient`)
``EDITJUDGE_TIMEOUT``       seconds per request (default 300); ``EDITJUDGE_RETRIES`` (default 3)
"""

from __future__ import annotations

import os
from pathlib import Path

from ..client import TOKEN_ENV, RewardClient

URL_ENV = "EDITJUDGE_URL"
DATASET_ROOT_ENV = "EDITJUDGE_DATASET_ROOT"
TIMEOUT_ENV = "EDITJUDGE_TIMEOUT"
RETRIES_ENV = "EDITJUDGE_RETRIES"
DEFAULT_URL = "http://127.0.0.1:8000"

__all__ = ["TOKEN_ENV", "URL_ENV", "DATASET_ROOT_ENV", "client_from_env", "dataset_root_from_env", "resolve_source"]


def _number(name: str, default: float, kind=float):
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"${name} must be a number, got {text!r}") from None


def client_from_env() -> RewardClient:
    """A client of the server at ``$EDITJUDGE_URL`` with ``$EDITJUDGE_SERVER_TOKEN`` (never logged)."""
    url = os.environ.get(URL_ENV) or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"${URL_ENV} must be an http(s) URL, got {url!r}")
    return RewardClient(url, timeout=_number(TIMEOUT_ENV, 300.0), retries=_number(RETRIES_ENV, 3, int))


def dataset_root_from_env() -> Path:
    """``$EDITJUDGE_DATASET_ROOT``, resolved; an error when it is unset or not a folder."""
    text = os.environ.get(DATASET_ROOT_ENV)
    if not text:
        raise ValueError(f"${DATASET_ROOT_ENV} is not set: it must name the folder the dataset's image paths "
                         "are relative to")
    root = Path(text).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"${DATASET_ROOT_ENV}={text!r} is not a folder")
    return root


def resolve_source(root: Path, relative) -> Path:
    """``root / relative``, refused when it is missing, not a string, or resolves outside ``root``
    (``..``, an absolute path, a symbolic link leading out)."""
    if not isinstance(relative, (str, os.PathLike)) or not str(relative):
        raise ValueError(f"the source image path must be a non-empty string, got {relative!r}")
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"source image {str(relative)!r} resolves outside the dataset root {str(root)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"source image {str(relative)!r} not found under {str(root)!r}")
    return path
