"""Editors: a list of edit requests in, one image (or an error) per request out.

Only the contract lives here for now; the diffusers and precomputed editors implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class EditRequest:
    item_id: str
    source: Path
    instruction: str
    seed: int


class Editor(Protocol):
    name: str

    def edit(self, requests: list[EditRequest]) -> list[Image.Image | Exception]:
        """One entry per request, in order: the edited image, or the exception that item raised."""
        ...
