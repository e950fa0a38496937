"""What a reward model returns: one ScoreResult per input, plus running statistics."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

# Enough recent batches for latency percentiles without growing through a long training run.
MAX_BATCH_TIMINGS = 10_000


@dataclass
class ScoreResult:
    """The outcome of scoring one image. ``score`` is ``nan`` exactly when ``error`` is set.

    ``answer`` is the part of ``raw_output`` the score was read from (after a thinking
    checkpoint's ``</think>``); ``samples`` holds each sample's own result when the judge sampled
    several answers (``sampling.num_samples``), ``score`` being their mean. ``probabilities``: asked with
    ``choices`` (``logits.Choices``), each choice's next-token probability, ``score`` the first's.
    """

    score: float
    raw_output: str | None = None
    error: str | None = None
    fallback: bool = False
    answer: str | None = None
    samples: list["ScoreResult"] | None = None
    probabilities: dict[str, float] | None = None  # logits mode with ``choices``: each choice's, renormalised

    @property
    def ok(self) -> bool:
        return self.error is None and not math.isnan(self.score)

    @property
    def spread(self) -> float | None:
        """The standard deviation of the samples' scores; None without several scored samples."""
        if not self.samples or len(self.samples) < 2 or not all(s.ok for s in self.samples):
            return None
        scores = [s.score for s in self.samples]
        mean = sum(scores) / len(scores)
        return math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))

    def answers(self) -> list[str | None]:
        """The answer text of each sample (one entry without sampling), for parsers of several fields."""
        parts = self.samples if self.samples else [self]
        return [p.answer if p.answer is not None else p.raw_output for p in parts]

    @classmethod
    def failure(cls, error: str, raw_output: str | None = None, fallback: bool = False) -> "ScoreResult":
        from ...redaction import redact

        return cls(score=math.nan, raw_output=raw_output, error=redact(error), fallback=fallback)


@dataclass
class ScoringStats:
    """Counters kept across calls; ``fallback_causes`` holds one line per batch that fell back.

    Where the time goes: ``seconds`` is wall time inside ``batch_evaluate``; of it,
    ``prefill_seconds`` and ``decode_seconds`` were spent in the model's forward calls (the first
    pass over the prompts, image encoding included, then one pass per generated token);
    ``vision_seconds`` is the image encoder's part of ``prefill_seconds``. ``prepare_seconds`` is opening
    images and building model inputs, on the prefetch thread when prefetch is on (then it
    overlaps the forward calls instead of adding to them). ``batch_timings`` holds
    ``(items, seconds)`` for recent batches: every item of a batch waits that batch's seconds.
    """

    items: int = 0
    failures: int = 0
    batches: int = 0
    batch_fallbacks: int = 0
    oom_splits: int = 0
    seconds: float = 0.0
    fallback_causes: list[str] = field(default_factory=list)
    prefill_tokens: int = 0  # prompt tokens run through the model, padding excluded
    padding_tokens: int = 0  # padding positions computed alongside them
    decode_tokens: int = 0  # generated positions, one per sequence per generation step
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    vision_seconds: float = 0.0
    prepare_seconds: float = 0.0
    batch_timings: deque = field(default_factory=lambda: deque(maxlen=MAX_BATCH_TIMINGS))
    auto_batch_size: int | None = None  # what ``batch_size: auto`` settled on, once it has run

    @property
    def images_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @property
    def forward_seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    @property
    def forward_share(self) -> float:
        """The share of wall time spent inside the model; the rest is overhead around it."""
        return self.forward_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def padding_fraction(self) -> float:
        """The share of prefilled positions that were padding."""
        total = self.prefill_tokens + self.padding_tokens
        return self.padding_tokens / total if total else 0.0


def per_item(values, default, n: int, name: str) -> list:
    """A batch argument as one value per item: None is ``default`` for each, a string is that string for each."""
    if values is None or isinstance(values, str):
        return [default if values is None else values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but edited_images has {n}")
    return values


def images_before(original) -> list:
    """The images shown before the edited one, in order: ``original`` is None (none), one image, or a
    tuple or list of images (a pairwise request: the source, then the first edit)."""
    if original is None:
        return []
    if isinstance(original, (tuple, list)):
        return list(original)
    return [original]
