"""GRPO groups across requests (wire version 2): an ``advantage`` only over a complete group.

A trainer that spreads a prompt's K samples over its ranks sends each rank's share in its own
request, every item naming its group and the group's full size K. The table below holds a group
open until K scores have arrived, from any number of requests, then gives every member
``(score - mean) / (std + 1e-4)`` (population std over the K scores: Flow-GRPO's per-prompt
normalisation). Each request waits for its groups. A group that is not complete by its deadline
(counted from the first request that joined it), or that lost a member (a failed item, a request
gone before its scores came), answers ``advantage: null`` to every member: never a value over part
of it. All methods run on the server's event loop (no locks).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

from .schema import EPSILON, ApiError


def group_key(name: Any) -> tuple[str, Any]:
    """1 and "1" are two groups, as in version 1."""
    return (type(name).__name__, name)


class Group:
    """One group: its declared size, the scores received so far and how it ended."""

    def __init__(self, name: Any, size: int, deadline: float) -> None:
        self.name, self.size, self.deadline = name, size, deadline
        self.joined = 0  # members announced by requests (before they are scored)
        self.scores: list[float | None] = []
        self.status = "open"  # -> complete | incomplete (deadline) | failed (a member has no score)
        self.reason: str | None = None
        self.mean: float | None = None
        self.std: float | None = None
        self.event = asyncio.Event()

    def advantage(self, score: float | None, epsilon: float = EPSILON) -> float | None:
        if self.status != "complete" or score is None:
            return None
        return (score - self.mean) / (self.std + epsilon)

    def summary(self) -> dict:
        return {"group": self.name, "size": self.size, "received": len(self.scores), "status": self.status,
                "reason": self.reason, "mean": self.mean, "std": self.std}


class GroupTable:
    """The open groups of every request in flight, by name; ended ones are remembered for ``wait_s``
    so that a late member gets its null at once instead of opening a new group of the same name."""

    def __init__(self, wait_s: float, max_open: int, clock: Callable[[], float] = time.monotonic,
                 on_complete: Callable[[Group], None] = lambda group: None) -> None:
        self.wait_s, self.max_open, self.clock, self.on_complete = wait_s, max_open, clock, on_complete
        self.open: dict[Hashable, Group] = {}
        self.ended: OrderedDict[Hashable, tuple[Group, float]] = OrderedDict()
        self.counts = {"complete": 0, "incomplete": 0, "failed": 0, "zero_spread": 0}

    def join(self, members: dict[Any, tuple[int, int]], wait_s: float | None = None) -> dict[Hashable, Group]:
        """Announce a request's members: ``{group name: (declared size, members in this request)}``.

        All or nothing: a size that contradicts the open group's, or more members than its size, is a
        409 before any item is scored; too many open groups a 429.
        """
        now = self.clock()
        self._forget(now)
        wait = self.wait_s if wait_s is None else min(wait_s, self.wait_s)
        chosen: dict[Hashable, Group] = {}
        for name, (size, count) in members.items():
            key = group_key(name)
            group = self.open.get(key)
            if group is None and key in self.ended:
                group = self.ended[key][0]
            if group is None:
                continue
            if group.size != size:
                raise ApiError(409, "group_size_mismatch", f"group {name!r}: this request says size {size}, an "
                                                           f"earlier one said {group.size}", "items")
            if group.status == "complete":
                raise ApiError(409, "group_complete", f"group {name!r} already has its {group.size} scores (group "
                                                      "names must be unique per training step)", "items")
            if group.status == "open" and group.joined + count > group.size:
                raise ApiError(409, "group_overfull", f"group {name!r} of size {size} already has {group.joined} "
                                                      f"member(s); this request adds {count} (group names must be "
                                                      "unique per training step)", "items")
            chosen[key] = group
        new = [name for name in members if group_key(name) not in chosen]
        if len(self.open) + len(new) > self.max_open:
            self._expire_due(now)
            if len(self.open) + len(new) > self.max_open:
                raise ApiError(429, "too_many_open_groups", f"{len(self.open)} groups are waiting for members "
                                                            f"(limit {self.max_open}); retry shortly",
                               headers={"Retry-After": "1"})
        for name in new:
            group = Group(name, members[name][0], now + wait)
            self.open[group_key(name)] = chosen[group_key(name)] = group
        for name, (_, count) in members.items():
            group = chosen[group_key(name)]
            if group.status == "open":
                group.joined += count
        return chosen

    def fill(self, group: Group, scores: list[float | None]) -> None:
        """A request's scored members (a None score fails the group: it cannot be normalised whole)."""
        if group.status != "open":
            return
        group.scores.extend(scores)
        if any(s is None for s in scores):
            self._end(group, "failed", "a member has no score")
        elif len(group.scores) >= group.size:
            mean = sum(group.scores) / len(group.scores)
            group.mean = mean
            group.std = math.sqrt(sum((s - mean) ** 2 for s in group.scores) / len(group.scores))
            if group.std == 0.0:
                self.counts["zero_spread"] += 1
            self._end(group, "complete", None)
            self.on_complete(group)

    def abandon(self, group: Group, why: str) -> None:
        """A member's request ended before its scores came (client gone, server error)."""
        if group.status == "open":
            self._end(group, "failed", why)

    async def wait(self, group: Group) -> None:
        remaining = group.deadline - self.clock()
        if group.status == "open":
            try:
                await asyncio.wait_for(group.event.wait(), max(0.0, remaining))
            except asyncio.TimeoutError:
                self._end(group, "incomplete", f"{len(group.scores)} of {group.size} scores had arrived by the "
                                               "group's deadline")

    def _end(self, group: Group, status: str, reason: str | None) -> None:
        if group.status != "open":
            return
        group.status, group.reason = status, reason
        self.counts[status] += 1
        key = group_key(group.name)
        if self.open.get(key) is group:
            del self.open[key]
            self.ended[key] = (group, self.clock())
            self.ended.move_to_end(key)
        group.event.set()

    def _expire_due(self, now: float) -> None:
        for group in [g for g in self.open.values() if g.deadline <= now]:
            self._end(group, "incomplete", "deadline passed with no request waiting")

    def _forget(self, now: float) -> None:
        while self.ended:
            key, (group, ended) = next(iter(self.ended.items()))
            if now - ended < self.wait_s:
                break
            del self.ended[key]
