"""One progress bar per stage over the whole run, fed by every worker, with logging that does not break it.

The parent opens a ``StageProgress`` around a stage; workers (spawned processes, or the parent itself
when there is one device) report through a queue:

    with StageProgress("edit", unit="edits") as bar:           # parent
        run_workers(edit_shard, devices, ..., progress_queue=bar.queue)

    progress.todo("my-editor", 28)                              # a worker: 28 items of my-editor to do
    progress.done("my-editor", 4)                               # ... 4 of them finished

The bar counts one unit (edits in stage 1, pairs in stage 2) with its rate and ETA; its postfix
holds the per-editor counts, and the stage ends with one line of per-editor totals. Workers'
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
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

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
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()
        self.bar = tqdm(total=0, desc=self.stage, unit=f" {self.unit}", dynamic_ncols=True, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} "
                                   "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")
        global _queue
        self._previous, _queue = _queue, self.queue  # a worker in this process reports here too
        self._env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
        silence_load_bars()
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def _handle(self, message) -> None:
        if isinstance(message, logging.LogRecord):
            logging.getLogger(message.name).handle(message)
            return
        kind, editor, n, *rest = message
        if kind == "todo":
            self.todo[editor] = self.todo.get(editor, 0) + n
            self.bar.total += n
        else:
            self.done[editor] = self.done.get(editor, 0) + n
            self.failed[editor] = self.failed.get(editor, 0) + (rest[0] if rest else 0)
            self.bar.update(n)
        if len(self.todo) > 1 or self.unit == "edits":
            self.bar.set_postfix_str(", ".join(f"{e} {self.done.get(e, 0)}/{t}" for e, t in self.todo.items()),
                                     refresh=False)
        self.bar.refresh()

    def _listen(self) -> None:
        while True:
            message = self.queue.get()
            if message is self._stop or message == "stop":
                return
            try:
                self._handle(message)
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
        self.bar.close()
        logger.info("%s", self.totals())
        self._redirect.__exit__(*exc)


def describe_ids(ids: list[str], shown: int = 3) -> str:
    """``a, b, c`` or ``a, b, ... z (40 items)``: a batch named by its items, not by positions."""
    ids = [str(i) for i in ids]
    if len(ids) <= shown:
        return ", ".join(ids)
    return f"{', '.join(ids[:shown - 1])}, ... {ids[-1]} ({len(ids)} items)"
