"""File names derived from untrusted ids: they never leave their folder and never collide."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_name(identifier: str) -> str:
    """A file-name stem for ``identifier``: itself when plain, else a cleaned form plus a short hash.

    Plain means letters, digits, ``.``, ``_``, ``-`` (not leading), at most 100 characters, no
    ``..``. Anything else (``/``, ``..``, spaces, unicode, NUL) is replaced by ``_`` and followed by
    ``=`` and 12 hex digits of the id's SHA-256. A plain name never contains ``=``, so a hashed name
    cannot equal a plain one, and two hashed names collide only if SHA-256 does.
    """
    if _PLAIN.fullmatch(identifier) and ".." not in identifier:
        return identifier
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", identifier).replace("..", "_").strip("._-")[:80] or "item"
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned}={digest}"


def is_inside(root: Path, path: Path) -> bool:
    """Whether ``path`` resolves to a location inside ``root`` (symlinks followed); False when it cannot
    be resolved (a symlink loop, a name too long)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: Python 3.11's "Symlink loop from ..."
        return False
    return True
