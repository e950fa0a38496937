"""One progress bar per stage over the whole run, fed by every worker, with logging that does not break it.

The parent opens a ``StageProgress`` around a stage; workers (spawned processes, or the parent itself
when there is one device) report through a queue:

    with StageProgress("edit", unit="edits") as bar:           # parent
        run_workers(edit_shard, devices, ..., progress_queue=bar.queue)

    progress.todo("my-editor", 28)                              # a worker: 28 items of my-editor to do
    progress.done("my-editor", 4)                               # ... 4 of them finished

The bar counts one unit (edits in stage 1, pairs in stage 2) with its rate and ETA; its postfix
holds the per-editor counts, and the stage ends with one line of per-editor totals. On a terminal
the bar ticks every second, so its elapsed time moves while a model loads; where stderr is not a
terminal (a log file, CI) there is no bar but a line after ``FIRST_LOG`` seconds and then every
``LOG_EVERY`` seconds (done/total, elapsed, ETA), so a long stage shows progress without filling the log. ``Steps`` does the same for
a phase of the parent's own steps (the model checks before a run). Workers'
log records travel through the same queue and are written by the parent with ``tqdm.write``
(``tqdm.contrib.logging.logging_redirect_tqdm``), so log lines never glue onto the bar. Model
loading bars (transformers, diffusers, hub downloads) are silenced while a stage bar is shown (in a
process that loaded a model itself, those libraries' bars stay off afterwards).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import queue as queue_module
import contextlib
import sys
import threading
import time
from typing import Any, Iterator

logger = logging.getLogger(__name__)

TICK = 1.0  # seconds between refreshes of a terminal's bar (its elapsed time moves during a long load)
# Where stderr is not a terminal: a progress line once a stage has run FIRST_LOG seconds, then every LOG_EVERY.
FIRST_LOG, LOG_EVERY = 5.0, 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def status_line(name: str, done: int, total: int, unit: str, seconds: float) -> str:
    """``edit: 40/112 edits, 12 s elapsed, ETA 22 s``: the ETA from the mean time per unit so far."""
    eta = _duration((total - done) * seconds / done) if done else "unknown"
    return f"{name}: {done}/{total} {unit}, {_duration(seconds)} elapsed, ETA {eta}"


def _bar(desc: str, unit: str, total: int):
    """A tqdm bar on stderr with elapsed<remaining; None where stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True, leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} "
                           "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")

_queue: Any = None  # where this process reports; None: nobody listens (library use, torchrun ranks)


def attach(progress_queue, forward_logs: bool = False, rank: int | None = None) -> None:
    """Report to ``progress_queue`` from this process; ``forward_logs``: send log records there too."""
    global _queue
    _queue = progress_queue
    if progress_queue is None:
        return
    silence_load_bars()
    if forward_logs:
        handler = logging.handlers.QueueHandler(progress_queue)
        handler.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s" if rank is not None else "%(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]


def active() -> bool:
    return _queue is not None


def todo(editor: str, n: int) -> None:
    if _queue is not None and n:
        _queue.put(("todo", editor, n))


def done(editor: str, n: int, failed: int = 0) -> None:
    if _queue is not None and n:
        _queue.put(("done", editor, n, failed))


def silence_load_bars() -> None:
    """No "Loading weights" / "Loading pipeline components" / download bars under a stage bar."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub and transformers at import
    import importlib
    import sys

    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    for name in ("transformers", "diffusers"):
        if name in sys.modules:
            importlib.import_module(f"{name}.utils.logging").disable_progress_bar()


def quiet_library(name: str) -> None:
    """Import ``name`` (transformers or diffusers, about to be loaded anyway) and silence its load bars."""
    if _queue is None:
        return
    import importlib

    importlib.import_module(f"{name}.utils.logging").disable_progress_bar()


class StageProgress:
    """The parent's bar for one stage, fed by ``todo`` / ``done`` messages and log records on ``queue``."""

    def __init__(self, stage: str, unit: str, spawned: bool) -> None:
        self.stage, self.unit = stage, unit
        # Spawned workers need a multiprocessing queue; a worker in this process a plain one.
        self.queue = multiprocessing.get_context("spawn").Queue() if spawned else queue_module.Queue()
        self.todo: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self._thread = threading.Thread(target=self._listen, name=f"progress-{stage}", daemon=True)
        self._stop = object()
        self._started = 0.0

    def __enter__(self) -> "StageProgress":
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()
        self.bar = _bar(self.stage, self.unit, 0)
        global _queue
        self._previous, _queue = _queue, self.queue  # a worker in this process reports here too
        self._env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
        silence_load_bars()
        self._started = time.perf_counter()
        self._next_log = self._started + FIRST_LOG
        self._thread.start()
        return self

    def status(self) -> str:
        """done/total, elapsed, ETA and the per-editor counts (the line logged without a terminal)."""
        line = status_line(self.stage, sum(self.done.values()), sum(self.todo.values()), self.unit,
                           time.perf_counter() - self._started)
        return line + (f" ({self._postfix()})" if self._postfix() else "")

    def _postfix(self) -> str:
        if len(self.todo) > 1 or self.unit == "edits":
            return ", ".join(f"{e} {self.done.get(e, 0)}/{t}" for e, t in self.todo.items())
        return ""

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.refresh()
        elif time.perf_counter() >= self._next_log and not 0 < sum(self.todo.values()) <= sum(self.done.values()):
            self._next_log = time.perf_counter() + LOG_EVERY  # (a finished stage says its totals instead)
            logger.info("%s", self.status())

    def _handle(self, message) -> None:
        if isinstance(message, logging.LogRecord):
            logging.getLogger(message.name).handle(message)
            return
        kind, editor, n, *rest = message
        if kind == "todo":
            self.todo[editor] = self.todo.get(editor, 0) + n
            if self.bar is not None:
                self.bar.total += n
        else:
            self.done[editor] = self.done.get(editor, 0) + n
            self.failed[editor] = self.failed.get(editor, 0) + (rest[0] if rest else 0)
            if self.bar is not None:
                self.bar.update(n)
        if self.bar is not None:
            if self._postfix():
                self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.refresh()

    def _listen(self) -> None:
        while True:
            try:
                message = self.queue.get(timeout=TICK)
            except queue_module.Empty:
                self._tick()
                continue
            if message is self._stop or message == "stop":
                return
            try:
                self._handle(message)
                self._tick()
            except Exception:  # a malformed message must not kill the bar or the run
                logger.exception("progress message %r", message)

    def totals(self) -> str:
        seconds = time.perf_counter() - self._started
        parts = [f"{e} {self.done.get(e, 0)}/{t}" + (f" ({self.failed[e]} failed)" if self.failed.get(e) else "")
                 for e, t in self.todo.items()]
        return (f"{self.stage}: {sum(self.done.values())} {self.unit} in {seconds:.1f} s"
                + (": " + ", ".join(parts) if parts else " (nothing to do)"))

    def __exit__(self, *exc) -> None:
        global _queue
        self.queue.put("stop")
        self._thread.join(timeout=30)
        _queue = self._previous
        if self._env is None:  # spawned workers inherit it while the stage runs; the process gets it back after
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = self._env
        if self.bar is not None:
            self.bar.close()
        logger.info("%s", self.totals())
        self._redirect.__exit__(*exc)


class Steps:
    """The parent's own numbered steps (the model checks before a run), shown like a stage: a bar on a
    terminal, else lines as a stage's (``FIRST_LOG``, ``LOG_EVERY``); a last line with the total time when the phase
    took over ``quiet_below`` seconds.

        with Steps("checking the models and devices", "checks") as steps:
            steps.add(3)
            for name in ("editor a", "editor b", "judge"):
                with steps.step(name):
                    check(name)
    """

    def __init__(self, name: str, unit: str, quiet_below: float = 2.0) -> None:
        self.name, self.unit, self.quiet_below = name, unit, quiet_below
        self.total = self.done = 0
        self.current = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ticker, name=f"steps-{name}", daemon=True)

    def __enter__(self) -> "Steps":
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = logging_redirect_tqdm()  # the checks' warnings above the bar, not through it
        self._redirect.__enter__()
        self.bar = _bar(self.name, self.unit, 0)
        self._started = time.perf_counter()
        self._next_log = self._started + FIRST_LOG
        self._thread.start()
        return self

    def add(self, n: int) -> None:
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()
        elif self.done == 0:
            logger.info("%s: %d %s ...", self.name, self.total, self.unit)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.current = what
        if self.bar is not None:
            self.bar.set_postfix_str(what)
        yield
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def status(self) -> str:
        line = status_line(self.name, self.done, self.total, self.unit, time.perf_counter() - self._started)
        return line + (f" (now: {self.current})" if self.current and self.done < self.total else "")

    def _ticker(self) -> None:
        while not self._stop.wait(TICK):
            if self.bar is not None:
                self.bar.refresh()
            elif time.perf_counter() >= self._next_log and self.done < self.total:
                self._next_log = time.perf_counter() + LOG_EVERY
                logger.info("%s", self.status())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.bar is not None:
            self.bar.set_postfix_str("")
            self.bar.close()
        seconds = time.perf_counter() - self._started
        if seconds >= self.quiet_below:
            logger.info("%s: %d/%d %s in %.1f s", self.name, self.done, self.total, self.unit, seconds)
        self._redirect.__exit__(*exc)


def describe_ids(ids: list[str], shown: int = 3) -> str:
    """``a, b, c`` or ``a, b, ... z (40 items)``: a batch named by its items, not by positions."""
    ids = [str(i) for i in ids]
    if len(ids) <= shown:
        return ", ".join(ids)
    return f"{', '.join(ids[:shown - 1])}, ... {ids[-1]} ({len(ids)} items)"
