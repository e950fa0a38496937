"""Qwen3-VL as a reward model: real batched scoring of edited images.

    from editjudge import Qwen3VLRewardModel
    judge = Qwen3VLRewardModel("Qwen/Qwen3-VL-8B-Instruct", batch_size=8)
    scores = judge.batch_score(["a.png", "b.png"], user_prompts=[...])   # list[float], nan = failed

Batching follows Qwen's recipe: a list of message lists through the processor's chat template
with left padding, ``generate``, trim the prompt, ``batch_decode``, parse. A batch that raises
is split in halves on out-of-memory, otherwise scored item by item; either way it is logged and
counted in ``stats``. An item that fails on its own (unreadable image, answer without a score)
gets ``nan`` and its error while the rest of its batch keeps its scores.

``score_mode="logits"`` skips generation: the assistant turn is prefilled up to the score
(``{"score": ``) and the expected value of the next-token distribution over digits is returned,
from logits and a softmax computed in float32 whatever the model's dtype.

Judging is greedy: the checkpoint's generation_config (Qwen3-VL-Instruct's samples) is replaced
by a greedy one and what it dropped is logged; ``sampling={...}`` samples instead, seeded per item,
``num_samples`` answers averaged (see ``sampling.py``). Images given with an item are always
shown: the source first (``original_images``), then the edited image. A thinking checkpoint's
answer is read after its ``</think>``; one still thinking at ``max_new_tokens`` fails with a
message saying so, and logits mode refuses a thinking template. At debug level each item's
images and their visual-token counts are logged (``max_pixels`` bounds them).

Speed options, none of which changes a float32 score or failure: ``group_by_length`` batches items of
similar token count together (results still come back in input order), ``prefetch`` opens the
images and builds the inputs of the next batch on a background thread while the model runs
(``"auto"``: on an accelerator, not on the CPU, where the model already uses every core),
``stop_early`` ends generation once every answer in the batch holds the JSON object its score is
read from (the parser reads nothing after it, so the rest could not change the result), and
``batch_size="auto"`` picks the batch size from free memory and halves it on out-of-memory.
``dtype``, ``attn_implementation`` and ``quantization="int8"`` (torchao, weight-only) trade
accuracy or portability for speed and memory. ``stats`` shows where the time went.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import torch
from tqdm.auto import tqdm

from .batching import (  # noqa: F401  (ForwardClock is part of this module's interface)
    ForwardClock,
    _describe,
    _free_memory_bytes,
    _int8_filter,
    _submit,
)
from .answers import AnswerMixin
from .qwen3_vl_inputs import InputsMixin, _Batch, _Request, bound_pixels  # _Request: tests build them
from .logits import Float32Head, choice_results, expected_scores, score_tokens
from .prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT, fill_prompt
from .results import ScoreResult, ScoringStats, per_item
from .sampling import Sampling
from ...torch_utils import is_out_of_memory, resolve_dtype
from ...progress import describe_ids
from .placement import check_placement, load_kwargs
from .settings import PIPELINE_PARAMS, SPEED_PARAMS, config_problems, identity_of, setting_problems
from .adapters import load_adapter

logger = logging.getLogger(__name__)

# Grouping reorders items across batches. A call of one or two batches keeps input order: there is
# little to regroup, and a short call (a trainer's step) keeps batches that match its input ranges.
GROUP_MIN_BATCHES = 3
AUTO_MAX_BATCH = 64  # larger batches stop paying on any device we run, and hurt latency
AUTO_MEMORY_SHARE = 0.5  # of the free memory, the rest is headroom for the estimate's errors
UNKNOWN_LENGTH = 4096  # tokens per item assumed by ``batch_size: auto`` when they cannot be estimated


class Qwen3VLRewardModel(AnswerMixin, InputsMixin):
    """Scores edited images with a Qwen3-VL checkpoint (a local folder or a hub id)."""

    writes_files = False  # no logs or cache of its own under the run's output folder (see reward.judge)
    reads_choices = True  # logits mode answers batch_evaluate(choices=...) (see reward.judge.judge_choices)
    runs_in_process = True  # its model computes here (see reward.judge)
    speed_params = SPEED_PARAMS  # the settings that change its speed only (settings.py)

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        batch_size: int | str = 4,
        use_batch_inference: bool = True,
        max_new_tokens: int = 64,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        user_prompt: str = DEFAULT_USER_PROMPT,
        compare_with_original: bool = False,
        score_mode: str = "generate",
        score_range: Sequence[float] = (0, 10),
        logits_prefix: str = '{"score": ',
        trust_remote_code: bool = False,
        show_progress: bool = True,
        group_by_length: bool = True,
        prefetch: bool | str = "auto",
        stop_early: bool = True,
        quantization: str | None = None,
        max_memory: int | str | dict | None = None,
        sampling: dict | None = None,
        adapter_path: str | None = None,
        merge_adapter: bool = False,
        text_before_images: bool = False,
    ) -> None:
        self._given = {k: v for k, v in locals().items() if k != "self"}  # for identity()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        group = list(device) if isinstance(device, (list, tuple)) else None
        problems = setting_problems(dict(
            batch_size=batch_size, dtype=dtype, score_mode=score_mode, max_new_tokens=max_new_tokens,
            score_range=score_range, attn_implementation=attn_implementation, quantization=quantization,
            group_by_length=group_by_length, prefetch=prefetch, stop_early=stop_early, device=device,
            max_memory=max_memory, adapter_path=adapter_path, merge_adapter=merge_adapter,
            sampling=sampling, min_pixels=min_pixels, max_pixels=max_pixels, text_before_images=text_before_images,
        ))
        if max_memory is not None and not group:
            problems.append("max_memory applies to a judge on a device group (device=['cuda:0', 'cuda:1'])")
        if problems:
            raise ValueError("invalid Qwen3VLRewardModel settings: " + "; ".join(problems))

        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_path = str(model_path)
        # Inputs go to a group's first device; accelerate's hooks move activations between the others.
        self.device = torch.device(group[0] if group else device)
        self.devices = group or [str(self.device)]
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.use_batch_inference = use_batch_inference
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.user_prompt = user_prompt
        self.compare_with_original = compare_with_original
        self.text_before_images = text_before_images  # the prompt's text, then the images (ImgEdit's order)
        self.score_mode = score_mode
        self.score_range = (float(score_range[0]), float(score_range[1]))
        self.logits_prefix = logits_prefix
        self.show_progress = show_progress
        self.group_by_length = group_by_length
        # On an accelerator the CPU is free to prepare the next batch. On the CPU the model already
        # uses every core, so a preparing thread can only compete with it (no gain measurable there).
        self.prefetch = self.device.type != "cpu" if prefetch == "auto" else prefetch
        self.stop_early = stop_early
        self.quantization = quantization
        self.sampling = Sampling.from_config(sampling)
        self.stats = ScoringStats()
        self.batch_log_level = logging.INFO  # the level of the per-batch lines
        self._parse_override = None  # set per batch_evaluate call (parse=)
        # The prefetch thread and the main thread share the processor, whose tokenizer's padding settings
        # are mutable: one builds inputs under this lock at a time. Answers are read with a tokenizer of
        # their own (``_answer_tokenizer``), so reading one never waits for a batch being built.
        self._processor_lock = threading.RLock()
        self._auto_batch_size: int | None = None
        self._auto_active = False
        self._closing_ids: frozenset[int] | None = None

        self.processor = AutoProcessor.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        bound_pixels(self.processor, min_pixels, max_pixels)
        # The main thread's own copy for decoding answers (the early-stop check, every decode step, and
        # the batch's texts): a fast tokenizer reconfigures its padding on each encode, so an instance used
        # by two threads at once fails ("Already borrowed"); sharing one under the lock made each decode
        # wait for the prefetch thread's whole batch.
        self._answer_tokenizer = copy.deepcopy(self.processor.tokenizer)
        self.thinking = self._check_thinking()
        self._digit_ids, self._ten_id = None, None
        if score_mode == "logits":  # how the tokenizer writes each score of the range, before any weights load
            tokens = score_tokens(self.processor.tokenizer, int(self.score_range[0]), int(self.score_range[1]))
            self._digit_ids, self._ten_id = tokens.digits, tokens.ten
            if tokens.ten is not None:
                logger.info('the tokenizer writes "10" as one token (id %d): its probability counts for 10', tokens.ten)
        # Straight onto the device, or split over the group's devices: never a full copy in host memory first.
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_path,
            dtype=self.dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            **load_kwargs(group or self.device, max_memory),
        )
        self.placement = check_placement(self.model, self.devices)  # {device: weight tensors}
        self.adapter_path = adapter_path
        if adapter_path is not None:  # a LoRA judge (the ``lora`` extra): see adapters.py
            self.model = load_adapter(self.model, adapter_path, merge=merge_adapter)
        self.model.eval()
        self._configure_generation()
        if quantization == "int8":
            self._quantize_int8()
        if score_mode == "logits":  # the score tokens must be among the model's output logits
            score_tokens(self.processor.tokenizer, int(self.score_range[0]), int(self.score_range[1]),
                         self.model.get_output_embeddings().weight.shape[0])
        logger.info(
            "loaded %s on %s (%s, %s, score_mode=%s, batch_size=%s, prefetch=%s, quantization=%s)",
            self.model_path, " + ".join(f"{d} ({n} tensors)" for d, n in self.placement.items()) if group
            else self.device, str(self.dtype).removeprefix("torch."),
            attn_implementation, score_mode, batch_size, self.prefetch, quantization,
        )

    @classmethod
    def config_problems(cls, params: dict) -> list[str]:
        """What is wrong with a ``reward_model.params`` block, without loading anything (``settings.py``)."""
        return config_problems(params)

    @classmethod
    def resolved_settings(cls, params: dict, device) -> dict:
        """What the settings hash cannot know before a device is chosen and that changes scores:
        ``dtype: auto`` is float32 on the CPU and bfloat16 (or float16) on a GPU."""
        first = device[0] if isinstance(device, (list, tuple)) else device
        if first == "auto":
            first = "cuda" if torch.cuda.is_available() else "cpu"
        return {"dtype": str(resolve_dtype(params.get("dtype", "auto"), first)).removeprefix("torch.")}

    @classmethod
    def identity_of(cls, params: dict) -> dict:
        """Everything that can change this judge's answers, for ``params`` (``settings.identity_of``)."""
        return identity_of(params)

    def identity(self) -> dict:
        """This judge's ``identity_of`` its settings, and what its device decided (``resolved_settings``)."""
        return dict(identity_of(self._given), resolved=self.resolved_settings(self._given, self._given["device"]))

    @classmethod
    def from_config(cls, params: dict) -> "Qwen3VLRewardModel":
        """Build from the ``reward_model.params`` block of the YAML configs; unknown keys are an error."""
        problems = cls.config_problems(params)
        if problems:
            raise ValueError("invalid reward_model.params: " + "; ".join(problems))
        kwargs = {k: v for k, v in params.items() if k not in PIPELINE_PARAMS}
        if "score_range" in kwargs:
            kwargs["score_range"] = tuple(kwargs["score_range"])
        return cls(**kwargs)

    # ------------------------------------------------------------------ public API

    def close(self) -> None:
        """Nothing to stop: the model lives in this process and goes with it (the judge contract's close)."""

    def score(self, edited_image, system_prompt: str | None = None, user_prompt: str | None = None,
              original_image=None) -> float:
        """Score one image; ``nan`` when no score could be obtained."""
        return self.batch_score(
            [edited_image],
            system_prompts=None if system_prompt is None else [system_prompt],
            user_prompts=None if user_prompt is None else [user_prompt],
            original_images=None if original_image is None else [original_image],
            use_batch_inference=False,
        )[0]

    def batch_score(self, edited_images, system_prompts=None, user_prompts=None, batch_size=None,
                    use_batch_inference=None, original_images=None, instructions=None) -> list[float]:
        """One float per input, in input order; ``math.nan`` where no score could be obtained."""
        results = self.batch_evaluate(
            edited_images, system_prompts=system_prompts, user_prompts=user_prompts, batch_size=batch_size,
            use_batch_inference=use_batch_inference, original_images=original_images, instructions=instructions,
        )
        return [r.score for r in results]

    def batch_evaluate(self, edited_images, system_prompts=None, user_prompts=None, batch_size=None,
                       use_batch_inference=None, original_images=None, instructions=None,
                       parse=None, item_ids=None, choices=None) -> list[ScoreResult]:
        """Like ``batch_score`` but each result keeps the raw answer, the error and the fallback flag.

        Prompts may be None (the configured prompt), one string for every item, or one per item.
        ``instructions`` (optional, one per item) fill ``{instruction}`` in the user prompts.
        ``original_images`` (optional, one per item: None for none, an image, or a tuple or list of
        images shown in its order, e.g. a pairwise request's source and first edit) are shown before the
        edited image, whatever ``compare_with_original`` says (that setting decides whether the pipeline
        passes them to the plain prompt). ``batch_size`` may be a positive integer or ``"auto"``.
        ``parse`` (generate mode only) replaces the score parser for this call: answer text (after
        any ``</think>``) -> score, raising ScoreParseError; rubrics use it to read several named
        fields. ``stop_early`` ends a row only where ``parse.decided(text)`` says the answer is
        decided; a ``parse`` without ``decided`` turns early stopping off for the call.
        ``item_ids`` (optional, one per item) name the items in the batch log lines instead of their
        positions in this call. ``choices`` (a ``logits.Choices``, logits mode only): each result holds
        the next-token probabilities of the choices after their prefix (``logits.choice_results``).
        """
        if parse is not None and self.score_mode != "generate":
            raise ValueError("parse= needs score_mode 'generate' (logits mode reads one digit)")
        self._choices = self._resolved_choices(choices)
        self._parse_override = parse
        edited_images = list(edited_images)
        n = len(edited_images)
        systems = per_item(system_prompts, self.system_prompt, n, "system_prompts")
        users = per_item(user_prompts, self.user_prompt, n, "user_prompts")
        originals = per_item(original_images, None, n, "original_images")
        instr = per_item(instructions, None, n, "instructions")
        users = [fill_prompt(u, i) for u, i in zip(users, instr)]
        if self.compare_with_original and original_images is None:
            raise ValueError("compare_with_original is set: original_images must be given")
        batch_size = self.batch_size if batch_size is None else batch_size
        if setting_problems({"batch_size": batch_size}):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
        batched = self.use_batch_inference if use_batch_inference is None else use_batch_inference
        auto = batched and batch_size == "auto"
        if not batched:
            batch_size = 1

        started = time.perf_counter()
        before = (self.stats.forward_seconds, self.stats.prefill_tokens, self.stats.padding_tokens)
        lengths = None
        if batched and n and (auto or (self.group_by_length and batch_size > 1)):
            try:
                lengths = self._estimated_lengths(edited_images, originals, systems, users)
            except (AttributeError, KeyError, TypeError) as exc:  # a processor not shaped like Qwen's
                logger.warning("cannot estimate token counts (%s: %s): batches keep input order", type(exc).__name__, exc)
        if auto:
            longest = max(lengths) if lengths else UNKNOWN_LENGTH
            batch_size = self._auto_batch_size or self._estimate_batch_size(longest)
            self.stats.auto_batch_size = batch_size
        order = list(range(n))
        if lengths is not None and self.group_by_length and batch_size > 1 and n > (GROUP_MIN_BATCHES - 1) * batch_size:
            # Longest first: a batch that does not fit fails at once, and the progress bar's estimate errs long.
            order.sort(key=lambda i: -lengths[i])

        results: list[ScoreResult | None] = [None] * n
        position = 0

        def next_indices() -> list[int]:
            nonlocal position
            size = self._auto_batch_size if auto else batch_size
            chunk = sorted(order[position:position + size])  # a batch keeps its items in input order
            position += len(chunk)
            return chunk

        def prepare(indices: list[int]) -> tuple[_Batch, dict[int, ScoreResult]]:
            return self._prepare_batch(indices, edited_images, originals, systems, users)

        bar = tqdm(total=n, desc="scoring", unit="img", disable=not self.show_progress or n == 0, leave=False)
        with ExitStack() as stack:
            stack.enter_context(self._left_padding())
            clock = stack.enter_context(ForwardClock(self.model, self.stats))
            pool = None
            if self.prefetch and n > batch_size:
                pool = stack.enter_context(ThreadPoolExecutor(1, "judge-prefetch"))
            self._auto_active = auto
            stack.callback(setattr, self, "_auto_active", False)
            pending = _submit(pool, prepare, next_indices()) if n else None
            while pending is not None:
                batch_started = time.perf_counter()
                batch, failed = pending.result()
                following = next_indices()
                pending = _submit(pool, prepare, following) if following else None
                indices = sorted([r.index for r in batch] + list(failed))
                for i, result in failed.items():
                    results[i] = result
                if batched:
                    chunk = self._score_batch_with_fallback(batch)
                else:
                    chunk = self._batch_score_sequential(batch, fallback=False)
                for request, result in zip(batch, chunk):
                    results[request.index] = result
                clock.flush()  # on CUDA, the batch's forward times: one wait, after its answers are read
                self.stats.batches += 1
                self.stats.batch_timings.append((len(indices), time.perf_counter() - batch_started))
                scored = [results[i].score for i in indices if results[i].ok]
                average = sum(scored) / len(scored) if scored else math.nan
                logger.log(self.batch_log_level, "processed batch %s: avg_score=%.3f (%d/%d scored)",
                            _describe(indices) if item_ids is None else describe_ids([item_ids[i] for i in indices]),
                            average, len(scored), len(indices))
                bar.update(len(indices))
        bar.close()

        elapsed = time.perf_counter() - started
        failures = sum(not r.ok for r in results)
        fallbacks = sum(r.fallback for r in results)
        self.stats.items += n
        self.stats.failures += failures
        self.stats.seconds += elapsed
        if n:
            forward = self.stats.forward_seconds - before[0]
            real, padding = self.stats.prefill_tokens - before[1], self.stats.padding_tokens - before[2]
            logger.log(self.batch_log_level, "scored %d images in %.2fs (%.2f images/s, %.0f%% of it in the model, %.1f%% padding): "
                        "%d failed, %d via sequential fallback",
                        n, elapsed, n / elapsed if elapsed > 0 else 0.0, 100 * forward / elapsed if elapsed > 0 else 0,
                        100 * padding / (real + padding) if real + padding else 0.0, failures, fallbacks)
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ batch size

    def _estimate_batch_size(self, tokens: int) -> int:
        """The largest power of two whose estimated memory fits in a share of the free memory."""
        text = self.model.config.get_text_config()
        element = torch.finfo(self.dtype).bits // 8
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        positions = tokens + (self.max_new_tokens if self.score_mode == "generate" else 1)
        cache = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * positions * element
        # One layer's transient activations (attention projections, the MLP's gate and up), and fp32 logits.
        activations = tokens * (6 * text.hidden_size + 3 * text.intermediate_size) * element
        per_item = 2 * (cache + activations + 2 * text.vocab_size * 4)
        free = _free_memory_bytes(self.device)
        size = max(1, min(AUTO_MAX_BATCH, int(free * AUTO_MEMORY_SHARE // per_item)))
        size = 1 << (size.bit_length() - 1)
        self._auto_batch_size = size
        logger.info("batch_size auto: %d (%.1f GiB free on %s, about %.0f MiB per item of %d tokens)",
                    size, free / 2**30, self.device, per_item / 2**20, tokens)
        return size

    def _learn_from_out_of_memory(self, size: int) -> None:
        if self._auto_active and self._auto_batch_size is not None and size // 2 < self._auto_batch_size:
            self._auto_batch_size = self.stats.auto_batch_size = max(1, size // 2)
            logger.warning("batch_size auto: out of memory at %d items, using %d from now on", size, size // 2)

    # ------------------------------------------------------------------ running the model

    def _score_batch_with_fallback(self, requests: list[_Request]) -> list[ScoreResult]:
        """Score a batch; on out-of-memory retry it in halves, on any other error item by item.

        The retry starts only after the ``except`` block: inside it the exception's traceback still
        holds the failed attempt's frames (activations, KV cache), which no ``empty_cache`` can free.
        Only the failure's text and kind leave the block; then memory is collected and released.
        """
        if not requests:
            return []
        label = f"batch {_describe([r.index for r in requests])}"
        try:
            return self._score_batch(requests)
        except Exception as exc:  # noqa: BLE001 - any failure of a batch is recoverable item by item
            out_of_memory, cause = is_out_of_memory(exc), f"{label}: {type(exc).__name__}: {exc}"
        self._free_memory()  # the exception and its traceback are gone: what the attempt held can be freed
        if out_of_memory and len(requests) > 1:
            self.stats.oom_splits += 1
            self._learn_from_out_of_memory(len(requests))
            half = len(requests) // 2
            logger.warning("out of memory in %s (%d items): retrying in halves of %d and %d",
                           label, len(requests), half, len(requests) - half)
            results, position = [], 0
            while position < len(requests):
                size = half if position == 0 else len(requests) - half
                if self._auto_active:  # what fits now, not the other half's size
                    size = min(size, self._auto_batch_size)
                results += self._score_batch_with_fallback(requests[position:position + size])
                position += size
            return results
        self.stats.batch_fallbacks += 1
        self.stats.fallback_causes.append(cause)
        logger.warning("error in %s; falling back to sequential scoring for this batch", cause)
        return self._batch_score_sequential(requests, fallback=True)

    def _batch_score_sequential(self, requests: list[_Request], fallback: bool = True) -> list[ScoreResult]:
        """Score one item at a time; an item that raises fails alone."""
        results = []
        for request in requests:
            error = None
            try:
                # A batch of one is already its own item (and keeps any inputs built ahead).
                result = self._score_batch(requests if len(requests) == 1 else [request])[0]
            except Exception as exc:  # noqa: BLE001 - recorded on the item, never a made-up score
                error, out_of_memory = f"{type(exc).__name__}: {exc}", is_out_of_memory(exc)
            if error is not None:  # outside the except block, so the failed attempt's memory can go
                if out_of_memory:
                    self._free_memory()
                result = ScoreResult.failure(error)
            result.fallback = fallback
            results.append(result)
            if fallback:
                logger.info("sequential fallback: item %d score=%s", request.index,
                            "nan" if not result.ok else f"{result.score:.3f}")
        return results

    def _score_batch(self, requests: list[_Request]) -> list[ScoreResult]:
        if self.score_mode == "logits":
            return self._score_batch_logits(requests)
        return self._score_batch_generate(requests)

    def _score_batch_logits(self, requests: list[_Request]) -> list[ScoreResult]:
        low, high = int(self.score_range[0]), int(self.score_range[1])
        inputs, choices = self._inputs(requests), self._choices
        # The kept positions' logits in float32: bfloat16 logits in an 8B model's range step by 0.125.
        with torch.inference_mode(), Float32Head(self.model):
            logits = self.model(**inputs, logits_to_keep=2 if high == 10 and choices is None else 1).logits
        return (choice_results(logits, choices) if choices is not None
                else expected_scores(logits, self._digit_ids, low, high, self._ten_id))

    def _quantize_int8(self) -> None:
        """int8 weight-only quantization of the linear layers (torchao); activations keep ``dtype``."""
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(self.model, Int8WeightOnlyConfig(), filter_fn=_int8_filter)

    def _free_memory(self) -> None:
        """Collect what a failed attempt left (reference cycles through its frames), then give the
        CUDA allocator's cached blocks back (on every GPU of the replica)."""
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for device in self.devices:
                if device.startswith("cuda"):
                    with torch.cuda.device(torch.device(device)):
                        torch.cuda.empty_cache()
