"""Qwen3-VL as a reward model: real batched scoring of edited images.

    from src.models.reward import Qwen3VLRewardModel
    judge = Qwen3VLRewardModel("Qwen/Qwen3-VL-8B-Instruct", batch_size=8)
    scores = judge.batch_score(["a.png", "b.png"], user_prompts=[...])   # list[float], nan = failed

Batching follows Qwen's recipe: a list of message lists through the processor's chat template
with left padding, ``generate``, trim the prompt, ``batch_decode``, parse. A batch that raises
is split in halves on out-of-memory, otherwise scored item by item; either way it is logged and
counted in ``stats``. An item that fails on its own (unreadable image, answer without a score)
gets ``nan`` and its error while the rest of its batch keeps its scores.

``score_mode="logits"`` skips generation: the assistant turn is prefilled up to the score
(``{"score": ``) and the expected value of the next-token distribution over digits is returned.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from src.images import ImageLoadError, load_image

from .parsing import ScoreParseError, parse_score
from .prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT, fill_prompt
from .results import ScoreResult, ScoringStats

logger = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SCORE_MODES = ("generate", "logits")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass
class _Request:
    """One item to score, with its images already opened."""

    index: int
    edited: object
    original: object | None
    system_prompt: str
    user_prompt: str


class Qwen3VLRewardModel:
    """Scores edited images with a Qwen3-VL checkpoint (a local folder or a hub id)."""

    def __init__(
        self,
        model_path: str,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        batch_size: int = 4,
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
    ) -> None:
        problems = []
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            problems.append(f"batch_size must be a positive integer, got {batch_size!r}")
        if dtype != "auto" and dtype not in DTYPES:
            problems.append(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
        if score_mode not in SCORE_MODES:
            problems.append(f"score_mode must be one of {list(SCORE_MODES)}, got {score_mode!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            problems.append(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if len(score_range) != 2 or not score_range[0] < score_range[1]:
            problems.append(f"score_range must be [low, high] with low < high, got {score_range!r}")
        elif score_mode == "logits" and not (0 <= score_range[0] and score_range[1] <= 10
                                             and all(float(v).is_integer() for v in score_range)):
            problems.append(f"score_mode 'logits' reads one digit (or '10'): score_range must be integers in 0-10, got {score_range!r}")
        if problems:
            raise ValueError("invalid Qwen3VLRewardModel settings: " + "; ".join(problems))

        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_path = str(model_path)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        if dtype == "auto":
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            self.dtype = DTYPES[dtype]
        self.batch_size = batch_size
        self.use_batch_inference = use_batch_inference
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.user_prompt = user_prompt
        self.compare_with_original = compare_with_original
        self.score_mode = score_mode
        self.score_range = (float(score_range[0]), float(score_range[1]))
        self.logits_prefix = logits_prefix
        self.show_progress = show_progress
        self.stats = ScoringStats()

        self.processor = AutoProcessor.from_pretrained(self.model_path, trust_remote_code=trust_remote_code)
        if min_pixels is not None or max_pixels is not None:
            size = dict(self.processor.image_processor.size)
            if min_pixels is not None:
                size["shortest_edge"] = int(min_pixels)
            if max_pixels is not None:
                size["longest_edge"] = int(max_pixels)
            self.processor.image_processor.size = size
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_path,
            dtype=self.dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
        ).to(self.device)
        self.model.eval()
        self._digit_ids = self._single_token_ids([str(d) for d in range(10)]) if score_mode == "logits" else None
        logger.info(
            "loaded %s on %s (%s, %s, score_mode=%s, batch_size=%d)",
            self.model_path, self.device, str(self.dtype).removeprefix("torch."),
            attn_implementation, score_mode, batch_size,
        )

    @classmethod
    def config_problems(cls, params: dict) -> list[str]:
        """What is wrong with a ``reward_model.params`` block, without loading anything."""
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        problems = []
        unknown = sorted(set(params) - accepted)
        if unknown:
            problems.append(f"unknown keys {unknown} (accepted: {', '.join(sorted(accepted))})")
        path = params.get("model_path")
        if not isinstance(path, str) or not path:
            problems.append("model_path: required, a local folder or a hub id")
        elif (path.startswith((".", "/", "~")) or os.path.isabs(path)) and not os.path.isdir(os.path.expanduser(path)):
            problems.append(f"model_path: local folder {path} does not exist")
        return problems

    @classmethod
    def from_config(cls, params: dict) -> "Qwen3VLRewardModel":
        """Build from the ``reward_model.params`` block of the YAML configs; unknown keys are an error."""
        problems = cls.config_problems(params)
        if problems:
            raise ValueError("invalid reward_model.params: " + "; ".join(problems))
        kwargs = dict(params)
        if "score_range" in kwargs:
            kwargs["score_range"] = tuple(kwargs["score_range"])
        return cls(**kwargs)

    # ------------------------------------------------------------------ public API

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
                       use_batch_inference=None, original_images=None, instructions=None) -> list[ScoreResult]:
        """Like ``batch_score`` but each result keeps the raw answer, the error and the fallback flag.

        Prompts may be None (the configured prompt), one string for every item, or one per item.
        ``instructions`` (optional, one per item) fill ``{instruction}`` in the user prompts.
        """
        edited_images = list(edited_images)
        n = len(edited_images)
        systems = self._per_item(system_prompts, self.system_prompt, n, "system_prompts")
        users = self._per_item(user_prompts, self.user_prompt, n, "user_prompts")
        originals = self._per_item(original_images, None, n, "original_images")
        instr = self._per_item(instructions, None, n, "instructions")
        if self.compare_with_original and original_images is None:
            raise ValueError("compare_with_original is set: original_images must be given")
        batch_size = self.batch_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        batched = self.use_batch_inference if use_batch_inference is None else use_batch_inference
        if not batched:
            batch_size = 1

        started = time.perf_counter()
        results: list[ScoreResult | None] = [None] * n
        starts = range(0, n, batch_size)
        bar = tqdm(starts, desc="scoring", unit="batch", disable=not self.show_progress or n == 0, leave=False)
        for start in bar:
            stop = min(start + batch_size, n)
            requests = []
            for i in range(start, stop):
                request = self._open(i, edited_images[i], originals[i], systems[i], fill_prompt(users[i], instr[i]))
                if isinstance(request, ScoreResult):
                    results[i] = request
                else:
                    requests.append(request)
            if batched:
                chunk = self._score_batch_with_fallback(requests, start, stop)
            else:
                chunk = self._batch_score_sequential(requests, fallback=False)
            for request, result in zip(requests, chunk):
                results[request.index] = result
            self.stats.batches += 1
            scored = [r.score for r in results[start:stop] if r.ok]
            average = sum(scored) / len(scored) if scored else math.nan
            logger.info("processed batch %d-%d: avg_score=%.3f (%d/%d scored)",
                        start, stop - 1, average, len(scored), stop - start)
        bar.close()

        elapsed = time.perf_counter() - started
        failures = sum(not r.ok for r in results)
        fallbacks = sum(r.fallback for r in results)
        self.stats.items += n
        self.stats.failures += failures
        self.stats.seconds += elapsed
        if n:
            logger.info("scored %d images in %.2fs (%.2f images/s): %d failed, %d via sequential fallback",
                        n, elapsed, n / elapsed if elapsed > 0 else 0.0, failures, fallbacks)
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ building inputs

    def _build_messages(self, edited_image, system_prompt: str, user_prompt: str, original_image=None) -> list[dict]:
        """A system turn and a user turn holding the image(s) then the prompt, nothing else."""
        content = []
        if original_image is not None:
            content.append({"type": "image", "image": original_image})
        content.append({"type": "image", "image": edited_image})
        content.append({"type": "text", "text": user_prompt})
        return [
            {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
            {"role": "user", "content": content},
        ]

    @staticmethod
    def _per_item(values, default, n: int, name: str) -> list:
        if values is None or isinstance(values, str):
            return [default if values is None else values] * n
        values = list(values)
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries but edited_images has {n}")
        return values

    def _open(self, index, edited, original, system_prompt, user_prompt) -> _Request | ScoreResult:
        try:
            edited_image = load_image(edited)
            original_image = load_image(original) if (self.compare_with_original and original is not None) else None
        except ImageLoadError as exc:
            return ScoreResult.failure(str(exc))
        return _Request(index, edited_image, original_image, system_prompt, user_prompt)

    def _images(self, requests: list[_Request]) -> list:
        images = []
        for r in requests:
            if r.original is not None:
                images.append(r.original)
            images.append(r.edited)
        return images

    # ------------------------------------------------------------------ running the model

    def _score_batch_with_fallback(self, requests: list[_Request], start: int, stop: int) -> list[ScoreResult]:
        if not requests:
            return []
        try:
            return self._score_batch(requests)
        except Exception as exc:  # noqa: BLE001 - any failure of a batch is recoverable item by item
            if is_out_of_memory(exc) and len(requests) > 1:
                self.stats.oom_splits += 1
                self._free_memory()
                half = len(requests) // 2
                logger.warning("out of memory in batch %d-%d (%d items): retrying in halves of %d and %d",
                               start, stop - 1, len(requests), half, len(requests) - half)
                return (self._score_batch_with_fallback(requests[:half], start, start + half)
                        + self._score_batch_with_fallback(requests[half:], start + half, stop))
            cause = f"batch {start}-{stop - 1}: {type(exc).__name__}: {exc}"
            self.stats.batch_fallbacks += 1
            self.stats.fallback_causes.append(cause)
            logger.warning("error in %s; falling back to sequential scoring for this batch", cause)
            self._free_memory()
            return self._batch_score_sequential(requests, fallback=True)

    def _batch_score_sequential(self, requests: list[_Request], fallback: bool = True) -> list[ScoreResult]:
        """Score one item at a time; an item that raises fails alone."""
        results = []
        for request in requests:
            try:
                result = self._score_batch([request])[0]
            except Exception as exc:  # noqa: BLE001 - recorded on the item, never a made-up score
                if is_out_of_memory(exc):
                    self._free_memory()
                result = ScoreResult.failure(f"{type(exc).__name__}: {exc}")
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

    def _with_left_padding(self, fn):
        tokenizer = self.processor.tokenizer
        original_side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        try:
            return fn()
        finally:
            tokenizer.padding_side = original_side

    def _score_batch_generate(self, requests: list[_Request]) -> list[ScoreResult]:
        messages = [self._build_messages(r.edited, r.system_prompt, r.user_prompt, r.original) for r in requests]

        def run():
            inputs = self.processor.apply_chat_template(
                messages,
                tokenize=True,
                add_generation_prompt=True,
                return_dict=True,
                return_tensors="pt",
                processor_kwargs={"padding": True},
            ).to(self.device)
            with torch.inference_mode():
                generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            # Left padding puts every prompt's end at the same column, so one slice trims them all.
            trimmed = generated[:, inputs["input_ids"].shape[1]:]
            return self.processor.batch_decode(trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False)

        texts = self._with_left_padding(run)
        return [self._parse(text) for text in texts]

    def _parse(self, text: str) -> ScoreResult:
        try:
            return ScoreResult(score=parse_score(text, *self.score_range), raw_output=text)
        except ScoreParseError as exc:
            return ScoreResult.failure(f"unparseable judge answer: {exc}", raw_output=text)

    def _single_token_ids(self, texts: list[str]) -> list[int]:
        ids = []
        for text in texts:
            encoded = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(encoded) != 1:
                raise ValueError(f"score_mode 'logits' needs {text!r} to be one token; the tokenizer gives {encoded}")
            ids.append(encoded[0])
        return ids

    def _prefilled_texts(self, requests: list[_Request]) -> list[str]:
        prompts = [
            self.processor.apply_chat_template(
                self._build_messages(r.edited, r.system_prompt, r.user_prompt, r.original),
                tokenize=False, add_generation_prompt=True,
            )
            for r in requests
        ]
        return [p + self.logits_prefix for p in prompts]

    def _score_batch_logits(self, requests: list[_Request]) -> list[ScoreResult]:
        low, high = int(self.score_range[0]), int(self.score_range[1])
        digits = torch.tensor(self._digit_ids)
        texts = self._prefilled_texts(requests)
        images = self._images(requests)
        needs_ten = high == 10

        def run():
            inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                if not needs_ten:
                    return self.model(**inputs).logits[:, -1, :].float(), None
                # Two steps: the first digit's distribution, then P("0" | "1") to tell 10 from 1.
                out = self.model.generate(
                    **inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False, output_logits=True,
                    return_dict_in_generate=True, logits_processor=[_ForceFirstToken(self._digit_ids[1])],
                )
                return out.logits[0].float(), out.logits[1].float()

        first, second = self._with_left_padding(run)
        probs = torch.softmax(first, dim=-1)[:, digits].cpu()
        p_zero_after_one = torch.softmax(second, dim=-1)[:, digits[0]].cpu() if second is not None else None
        results = []
        for row in range(len(requests)):
            values, weights = [], []
            for d in range(10):
                if d == 1 and p_zero_after_one is not None:
                    q = float(p_zero_after_one[row])
                    for value, weight in ((1, 1.0 - q), (10, q)):
                        if low <= value <= high:
                            values.append(value)
                            weights.append(float(probs[row, d]) * weight)
                elif low <= d <= high:
                    values.append(d)
                    weights.append(float(probs[row, d]))
            mass = sum(weights)
            raw = f"logits: P(score digit)={mass:.4f} " + " ".join(
                f"{v}:{w / mass:.3f}" if mass > 0 else f"{v}:0" for v, w in zip(values, weights))
            if mass <= 1e-6:
                results.append(ScoreResult.failure("judge put no probability on a score digit", raw_output=raw))
                continue
            expected = sum(v * w for v, w in zip(values, weights)) / mass
            results.append(ScoreResult(score=expected, raw_output=raw))
        return results

    def _free_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _ForceFirstToken:
    """A logits processor that forces the first generated token (raw logits stay recorded)."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id
        self.prompt_length: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        if input_ids.shape[1] == self.prompt_length:
            forced = torch.full_like(scores, -math.inf)
            forced[:, self.token_id] = 0.0
            return forced
        return scores
