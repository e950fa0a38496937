"""Degenerate rewards, raised in ``/metrics`` and the log: a trainer learns nothing from them.

* ``failure_rate``: over half of the last ``WINDOW`` items have no score;
* ``constant_scores``: the last ``WINDOW`` scores (at least ``MIN_SCORES``) are all the same value;
* ``zero_spread_groups``: over half of the last ``GROUP_WINDOW`` groups (at least ``MIN_GROUPS``) had
  every member's score equal, so every advantage is 0.

Each alarm is a gauge (1 raised, 0 not) and one warning line when it is raised, one info line when
it clears. Thread-safe (judge threads report items, the event loop groups).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

logger = logging.getLogger(__name__)

WINDOW = 200
MIN_SCORES = 32
GROUP_WINDOW = 50
MIN_GROUPS = 8


class Alarms:
    def __init__(self, window: int = WINDOW, min_scores: int = MIN_SCORES, group_window: int = GROUP_WINDOW,
                 min_groups: int = MIN_GROUPS) -> None:
        self._lock = threading.Lock()
        self.items: deque[float | None] = deque(maxlen=window)
        self.groups: deque[bool] = deque(maxlen=group_window)  # True: zero spread
        self.min_scores, self.min_groups = min_scores, min_groups
        self.raised = {"failure_rate": False, "constant_scores": False, "zero_spread_groups": False}

    def observe_items(self, scores: list[float | None]) -> None:
        with self._lock:
            self.items.extend(scores)
            self._update()

    def observe_group(self, std: float | None, members: int) -> None:
        if std is None or members < 2:
            return
        with self._lock:
            self.groups.append(std == 0.0)
            self._update()

    def failure_rate(self) -> float:
        return sum(1 for s in self.items if s is None) / len(self.items) if self.items else 0.0

    def _update(self) -> None:
        scored = [s for s in self.items if s is not None]
        failure = self.failure_rate()
        zero = sum(self.groups) / len(self.groups) if self.groups else 0.0
        checks = {
            "failure_rate": (len(self.items) >= self.min_scores and failure > 0.5,
                             f"{failure:.0%} of the last {len(self.items)} items have no score"),
            "constant_scores": (len(scored) >= self.min_scores and len(set(scored)) == 1,
                                f"the last {len(scored)} scores are all {scored[-1] if scored else None}"),
            "zero_spread_groups": (len(self.groups) >= self.min_groups and zero > 0.5,
                                   f"{zero:.0%} of the last {len(self.groups)} groups have zero spread "
                                   "(every advantage 0)"),
        }
        for name, (now, why) in checks.items():
            if now and not self.raised[name]:
                logger.warning("reward alarm %s: %s", name, why)
            elif self.raised[name] and not now:
                logger.info("reward alarm %s cleared", name)
            self.raised[name] = now

    def lines(self) -> list[str]:
        with self._lock:
            return ["# HELP editjudge_reward_alarm 1 while a degenerate-reward alarm is raised (see the log).",
                    "# TYPE editjudge_reward_alarm gauge",
                    *[f'editjudge_reward_alarm{{alarm="{k}"}} {int(v)}' for k, v in sorted(self.raised.items())],
                    "# HELP editjudge_recent_failure_rate Share of the last items without a score.",
                    "# TYPE editjudge_recent_failure_rate gauge",
                    f"editjudge_recent_failure_rate {self.failure_rate():.4f}"]
