"""The contract of a benchmark's own scoring protocol (ImgEdit, RISEBench, KRIS-Bench), reproduced.

A protocol is read from a local checkout of the benchmark's repository that the user points to
(``reward_model.params.protocol: {name: imgedit, dir: /data/ImgEdit}``), as ``viescore_prompts_dir``
reads GEdit-Bench's prompts: the upstream prompt constants or JSON are parsed, never imported or run,
and nothing is copied into this repository. The upstream files' SHA-256 are the protocol's identity:
they are part of the scoring settings hash and are named in every report, so results from two
versions of a protocol never mix.

For each item, ``asks`` says what the upstream script sends the judge (one ``Ask`` per request: the
prompt text with its placeholders filled, and the images in the upstream order: the last one shown is
``Ask.image``, those before it ``Ask.first_image``, one image or a tuple of several); the judge answers
every ``Ask`` through the one judge contract (``batch_evaluate``); ``item_result`` reads the answers as
the upstream script reads them; ``summary`` computes the per-category and overall figures as the
upstream script computes them, and ``export`` writes the files the upstream scripts write or read.

A protocol class is built as ``cls(folder, **options)`` (``registry.load_protocol``): ``folder`` is the
user's checkout, ``options`` the rest of the config's ``protocol`` mapping; it raises ``ProtocolError``
when the checkout lacks its files (a configuration error: exit 2 before any work). ``asks`` may raise
``ItemProblem`` for one item the upstream script could not judge (an edit type it has no prompt for):
that item is a failure record, the others go on. Optional attributes: ``score_range`` (the scale of an
item's score, for the reports' axis and their "failed = min" mean; default (0, 10)) and ``categories``
(the categories it judges: a benchmark none of whose categories is among them is refused before work).
An answer ``item_result`` cannot read is its ``ItemResult.error`` (an exception there fails that item only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol as _Contract

from ..files import sha256


class ProtocolError(ValueError):
    """The checkout does not hold the protocol's files in the expected layout (a configuration error)."""


class ItemProblem(ValueError):
    """One item the upstream script could not judge (raised by ``asks``): a failure record for that item."""


@dataclass(frozen=True)
class Ask:
    """One request to the judge for one item, as the upstream script makes it."""

    name: str                    # the judgement it gives, e.g. "consistency", "reasoning", "quality"
    user_prompt: str             # the full text sent, placeholders filled
    image: Any                   # the last image shown (usually the edit): a path or a PIL image
    first_image: Any = None      # what is shown before it: None, one image (the source, or a reference),
                                 # or a tuple of images shown in that order (see ``shown_before``)
    system_prompt: str = ""      # "" when the upstream request has no system message


def shown_before(first_image) -> tuple:
    """The images an ``Ask`` shows before its ``image``, in order: ``()`` for None, ``(image,)`` for one
    image, the images themselves for a tuple or list (KRIS-Bench's viewpoint request shows the source and
    the edit before the ground-truth view). ``scoring`` groups asks by how many there are."""
    if first_image is None:
        return ()
    if isinstance(first_image, (tuple, list)):
        return tuple(first_image)
    return (first_image,)


@dataclass
class ItemResult:
    """An item's figures as the upstream script reads its answers."""

    score: float | None                              # the item's headline number, None when unreadable
    sub_scores: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None                         # why ``score`` is None (kept, never raised)


def file_digest(path: Path) -> str:
    """An upstream file's SHA-256: part of the protocol's identity."""
    return sha256(Path(path))


class BenchmarkProtocol(_Contract):
    name: str        # "imgedit", "rise", "kris"
    version: str     # the upstream rule's version where it changed (RISEBench's April 2026 rule)
    # optional: score_range: tuple[float, float], the scale of an item's score (default (0, 10))

    def identity(self) -> dict:
        """``{"protocol": name, "version": version, "files": {upstream relative path: sha256}}``."""

    def asks(self, item, edited: Path) -> list[Ask]:
        """What the upstream script sends the judge for ``item`` (a ``BenchmarkItem``) edited as ``edited``."""

    def item_result(self, item, answers: dict[str, str | None]) -> ItemResult:
        """The item's figures from the judge's answer text per ``Ask.name`` (None: that request failed)."""

    def summary(self, rows: list[dict]) -> dict:
        """Per category and overall, as the upstream script computes them, from rows of
        ``{"item_id", "category", "editor", "score", "sub_scores", "answers", "error"}`` (one editor's rows;
        ``score`` None for a failed item, ``answers`` the answer text per ``Ask.name``)."""

    def export(self, rows: list[dict], folder: Path) -> list[Path]:
        """Write what the upstream scripts write (or read), for one editor's rows; the paths written."""
