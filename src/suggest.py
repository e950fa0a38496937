"""'Did you mean' for unknown configuration keys."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key nearest to ``key`` (a typo, a wrong case), or None when none is close."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return lowered[key.lower()]
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_key(key: str, known: Iterable[str]) -> str:
    """``unknown key; did you mean X? (known: a, b, c)``."""
    known = list(known)
    guess = closest(str(key), known)
    hint = f"; did you mean {guess!r}?" if guess else ""
    return f"unknown key{hint} (known: {', '.join(known)})"
