"""What a reward model returns: one ScoreResult per input, plus running statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class ScoreResult:
    """The outcome of scoring one image. ``score`` is ``nan`` exactly when ``error`` is set."""

    score: float
    raw_output: str | None = None
    error: str | None = None
    fallback: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not math.isnan(self.score)

    @classmethod
    def failure(cls, error: str, raw_output: str | None = None, fallback: bool = False) -> "ScoreResult":
        return cls(score=math.nan, raw_output=raw_output, error=error, fallback=fallback)


@dataclass
class ScoringStats:
    """Counters kept across calls; ``fallback_causes`` holds one line per batch that fell back."""

    items: int = 0
    failures: int = 0
    batches: int = 0
    batch_fallbacks: int = 0
    oom_splits: int = 0
    seconds: float = 0.0
    fallback_causes: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0
