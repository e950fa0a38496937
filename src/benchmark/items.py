"""A benchmark item, the error every loader raises, and the instruction policy (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read; the message names the file and the record."""


@dataclass(frozen=True)
class BenchmarkItem:
    id: str
    category: str
    instruction: str
    image: Path
    reference_image: Path | None = None
    language: str | None = None
    problem: str | None = None  # why the item cannot be edited or scored (see the module docstring)
    instruction_truncated_from: int | None = None  # the original length, when the instruction was cut
    intersection_exist: bool | None = None  # GEdit-Bench's Intersection_exist (gedit format only)


MAX_INSTRUCTION_CHARS = 2000


def apply_instruction_policy(items: list[BenchmarkItem], max_chars: int = MAX_INSTRUCTION_CHARS) -> list[BenchmarkItem]:
    """Mark empty instructions invalid and cut long ones (the policy in the module docstring)."""
    out = []
    for item in items:
        if not item.instruction.strip():
            item = replace(item, problem="empty instruction")
        elif len(item.instruction) > max_chars:
            item = replace(item, instruction=item.instruction[:max_chars],
                           instruction_truncated_from=len(item.instruction))
        out.append(item)
    return out


Select = Callable[[list[BenchmarkItem]], list[BenchmarkItem]]


def _all(items: list[BenchmarkItem]) -> list[BenchmarkItem]:
    return items
