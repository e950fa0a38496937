"""Helpers of the Qwen3-VL reward model's batching loop: timing, stopping, sizing, threading.

Kept apart from ``qwen3_vl.py`` so that the model class reads as the scoring recipe; ``ForwardClock``
is re-exported there (``from editjudge.models.reward.qwen3_vl import ForwardClock`` keeps working).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from PIL import Image

from ...images import ImageLoadError, image_size

from .results import ScoringStats


def _int8_filter(module: torch.nn.Module, name: str) -> bool:
    # The output head stays in ``dtype``: the score is read straight off its logits.
    return isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")


def _submit(pool: ThreadPoolExecutor | None, fn, *args) -> Future:
    if pool is not None:
        return pool.submit(fn, *args)
    future: Future = Future()
    future.set_result(fn(*args))
    return future


def _describe(indices: list[int]) -> str:
    """``4-7`` for a contiguous run of items, else the items themselves."""
    if not indices:
        return "(empty)"
    if indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}-{indices[-1]}"
    shown = ",".join(map(str, indices[:12]))
    return f"items {shown}" + (",..." if len(indices) > 12 else "")


def _image_dims(source) -> tuple[int, int] | None:
    """(width, height) as the image will be seen (EXIF rotation applied), reading the header only."""
    if not isinstance(source, (Image.Image, str, os.PathLike)):
        return None
    try:
        return image_size(source)
    except (ImageLoadError, OSError, ValueError):
        return None


def _free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# Submodules that encode images. transformers 5's ``generate`` runs them before the model's own
# first forward call (``get_image_features``), so a clock on the top module alone misses them.
ENCODER_NAMES = ("visual", "vision_tower", "vision_model")


class ForwardClock:
    """Adds the time and the tokens of a model's forward calls to ``stats`` while entered.

        with ForwardClock(model, stats) as clock:
            model.generate(**inputs)
            clock.flush()  # optional: the times so far (exiting flushes too)

    A call over several positions per row is a prefill (its padding is counted apart); a call
    over one position per row is a generation step. The image encoder's calls count as prefill
    time (and as ``vision_seconds``), whether ``generate`` makes them before the first forward
    call or the forward call makes them itself; nested calls are timed once.

    On the CPU each call is timed with ``perf_counter`` as it ends. On CUDA no call waits for the
    GPU: each records a pair of timing events on every GPU that holds the model's weights (its
    current stream), and ``flush`` (at a batch's end, and on exit) waits once for each GPU's last
    event and adds the calls' times, each the longest span over those GPUs. So the clock never
    serialises kernel launches with their execution, and never calls a bare ``synchronize()``
    (which would wait on, and create a context on, the current device).
    """

    def __init__(self, model: torch.nn.Module, stats: ScoringStats) -> None:
        self.model = model
        self.stats = stats
        self._handles: list = []
        self._depth = 0
        self._started = None  # the outermost call's start mark
        self._kind = "prefill"
        self._cuda_devices: list[torch.device] = []
        self._encoder_starts: list = []
        self._pending: list[tuple[tuple[str, ...], list, list]] = []  # CUDA: (stats fields, starts, ends)

    def _mark(self):
        """Now: ``perf_counter`` on the CPU; on CUDA a timing event recorded on each of the model's GPUs."""
        if not self._cuda_devices:
            return time.perf_counter()
        marks = []
        for device in self._cuda_devices:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(device))
            marks.append(event)
        return marks

    def _add(self, fields: tuple[str, ...], started) -> None:
        """Adds the time from ``started`` to now to each of ``fields`` (on CUDA, at the next ``flush``)."""
        if not fields:
            return
        ended = self._mark()
        if self._cuda_devices:
            self._pending.append((fields, started, ended))
            return
        for field in fields:
            setattr(self.stats, field, getattr(self.stats, field) + ended - started)

    def flush(self) -> None:
        """Adds the times of the calls recorded on CUDA: waits for each GPU's last event, once."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for event in pending[-1][2]:  # a stream runs its events in order: the last one ends after the rest
            event.synchronize()
        for fields, starts, ends in pending:
            seconds = max(start.elapsed_time(end) for start, end in zip(starts, ends)) / 1000
            for field in fields:
                setattr(self.stats, field, getattr(self.stats, field) + seconds)

    def __enter__(self) -> "ForwardClock":
        devices = {p.device for p in self.model.parameters() if p.is_cuda}
        self._cuda_devices = sorted(devices, key=lambda d: -1 if d.index is None else d.index)
        encoders = [m for name, m in self.model.named_modules() if name.rsplit(".", 1)[-1] in ENCODER_NAMES]
        # always_call: a call that raises (out of memory) still ends, or every later call would look nested.
        self._handles = [self.model.register_forward_pre_hook(self._before, with_kwargs=True),
                         self.model.register_forward_hook(self._after, with_kwargs=True, always_call=True)]
        for encoder in encoders:
            self._handles += [encoder.register_forward_pre_hook(self._before_encoder),
                              encoder.register_forward_hook(self._after_encoder, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._depth = 0
        self._encoder_starts = []
        self.flush()

    def _start(self, kind: str) -> None:
        self._depth += 1
        if self._depth == 1:
            self._kind = kind
            self._started = self._mark()

    def _stop(self) -> bool:
        """True once the outermost call ends; False for a nested call."""
        self._depth = max(0, self._depth - 1)
        return not self._depth

    def _before_encoder(self, module, args) -> None:
        self._start("prefill")
        self._encoder_starts.append(self._started if self._depth == 1 else self._mark())

    def _after_encoder(self, module, args, output) -> None:
        started = self._encoder_starts.pop() if self._encoder_starts else self._started
        outermost = self._stop()
        # An encoder inside an encoder is part of the outer one's time; inside another timed call,
        # that call counts the prefill time.
        vision = () if self._encoder_starts else ("vision_seconds",)
        self._add((("prefill_seconds",) if outermost else ()) + vision, started)

    def _before(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        prefill = ids is None or ids.shape[1] > 1
        if ids is not None:
            rows, columns = ids.shape[:2]
            if prefill:
                mask = kwargs.get("attention_mask")
                padded = isinstance(mask, torch.Tensor) and mask.shape == (rows, columns)
                real = int(mask.sum()) if padded else rows * columns
                self.stats.prefill_tokens += real
                self.stats.padding_tokens += rows * columns - real
            else:
                self.stats.decode_tokens += rows
        self._start("prefill" if prefill else "decode")

    def _after(self, module, args, kwargs, output) -> None:
        if self._stop():
            self._add(("prefill_seconds" if self._kind == "prefill" else "decode_seconds",), self._started)


class _ScoreWritten:
    """Stopping criterion: a row is done once its answer is decided (``decided(text)``).

    ``decided`` must be true only where no later text can change the parse (``json_decided``: the
    first JSON object with the score has closed, and the parser reads nothing after it), so
    stopping there changes no score and no failure, only how much of the answer is kept.
    ``ends[row]`` is where a row was cut, in generated tokens; without an end-of-sequence token,
    generate keeps extending a finished row. Rows are decoded only when a token that can close an
    object arrives. ``tokenizer`` must be one no other thread uses (the judge's ``_answer_tokenizer``):
    this check runs at every decode step and must not wait for a batch being prepared.
    """

    def __init__(self, tokenizer, closing_ids: frozenset[int], prompt_length: int, decided) -> None:
        self.decided = decided
        self.tokenizer = tokenizer
        self.closing_ids = closing_ids
        self.prompt_length = prompt_length
        self.ends: list[int | None] = []

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        if not self.ends:
            self.ends = [None] * input_ids.shape[0]
        generated = input_ids.shape[1] - self.prompt_length
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.ends[row] is None and token in self.closing_ids:
                text = self.tokenizer.decode(input_ids[row, self.prompt_length:], skip_special_tokens=True)
                if self.decided(text):
                    self.ends[row] = generated
        return torch.tensor([end is not None for end in self.ends], device=input_ids.device)
