"""Whether a judge replica can score: a probe after a batch in which every item failed.

A judge whose backend died (the vLLM server it started exited, a sticky CUDA error) fails every
item; a batch of bad inputs fails every item too. A judge that answers, even in words the rubric cannot
read (a small judge given the official VIEScore prompts), is alive: those are per-item errors. To tell
a dead judge from bad inputs the replica, after a batch in which no item got an answer, scores one
small known-good probe item: if that gets no answer either, the replica is unhealthy (``/health`` 503 and
new score requests 503 once every replica is), and it is probed again every ``PROBE_INTERVAL``
seconds while idle, until it scores again.
"""

from __future__ import annotations

import logging
import time

from PIL import Image

logger = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0


def answered(result: dict) -> bool:
    """Whether the judge produced an answer for this item (read by the rubric or not)."""
    if result.get("score") is not None:
        return True
    if "raw_outputs" in result:
        return any(str(text or "").strip() for text in (result.get("raw_outputs") or {}).values())
    return bool(str(result.get("raw_output") or "").strip())


def probe(model, rubric, with_source: bool) -> str | None:
    """None when the judge answers a plain grey pair, else why not."""
    from ..redaction import redact
    from .batcher import score_batch

    edited = Image.new("RGB", (64, 64), (128, 128, 128))
    source = Image.new("RGB", (64, 64), (120, 120, 120)) if with_source else None
    try:
        alive = getattr(model, "_alive", None)
        if callable(alive):
            alive()
        result = score_batch(model, rubric, [edited], ["health probe: keep the image as it is"], [source])[0]
    except Exception as exc:  # noqa: BLE001 - the answer is the reason
        return redact(f"{type(exc).__name__}: {exc}")
    if not answered(result):
        return result.get("error") or "the probe item got no answer"
    return None


class ReplicaHealth:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problem: str | None = None
        self.checked = 0.0

    def after_batch(self, model, rubric, with_source: bool, results: list[dict]) -> None:
        if results and not any(answered(r) for r in results):
            self.check(model, rubric, with_source)
        elif self.problem is not None and any(answered(r) for r in results):
            self._set(None)

    def idle(self, model, rubric, with_source: bool) -> None:
        if self.problem is not None and time.monotonic() - self.checked >= PROBE_INTERVAL:
            self.check(model, rubric, with_source)

    def check(self, model, rubric, with_source: bool) -> None:
        self.checked = time.monotonic()
        self._set(probe(model, rubric, with_source))

    def _set(self, problem: str | None) -> None:
        if problem and self.problem is None:
            logger.error("%s cannot score (a probe item failed too): %s", self.name, problem.splitlines()[0])
        elif problem is None and self.problem is not None:
            logger.info("%s scores again", self.name)
        self.problem = problem
