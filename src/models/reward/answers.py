"""Generate mode of the Qwen3-VL judge: producing answers and reading their scores.

A mixin of ``Qwen3VLRewardModel`` (kept apart so that the model class reads as the batching
recipe): greedy decoding with the checkpoint's sampling settings dropped, or seeded sampling
(``sampling.py``); early stopping where the answer is decided; thinking templates (the score is
read after ``</think>``); and the debug log of each item's images and visual tokens.
"""

from __future__ import annotations

import logging

import torch

from .batching import _ScoreWritten
from .parsing import THINK_CLOSE, THINK_OPEN, ScoreParseError, answer_text, json_decided, parse_score
from .results import ScoreResult, images_before
from .sampling import SeededSampler, combine_samples, greedy_generation_config, item_key
from .thinking import LOGITS_WITH_THINKING, PROBE_MESSAGES, THINKING_MIN_NEW_TOKENS, opens_thinking

logger = logging.getLogger(__name__)


class AnswerMixin:
    """Methods of ``Qwen3VLRewardModel`` for generate mode; they use its processor, model and settings."""

    def _log_visual_tokens(self, requests: list, inputs) -> None:
        """One debug line per item: the images its conversation holds (counted in its token ids),
        each with the size it was resized to and its visual-token count (from ``image_grid_thw``)."""
        grids = inputs.get("image_grid_thw")
        start_id = getattr(self.model.config, "vision_start_token_id", None)
        if grids is None or start_id is None:
            return
        patch = self.processor.image_processor.patch_size
        merge = self.processor.image_processor.merge_size
        grids, position = grids.tolist(), 0
        for request, ids in zip(requests, inputs["input_ids"]):
            count = int((ids == start_id).sum())
            before = len(images_before(request.original))
            labels = ((["source"] if before == 1 else [f"shown {k + 1}" for k in range(before)]) + ["edited"]
                      if count == before + 1 else [])
            parts = []
            for k in range(count):
                t, h, w = grids[position + k] if position + k < len(grids) else (0, 0, 0)
                label = labels[k] if k < len(labels) else f"image {k + 1}"
                parts.append(f"{label} {w * patch}x{h * patch} px -> {t * h * w // (merge * merge)} visual tokens")
            position += count
            logger.debug("judge input for item %d: %d image(s): %s", request.index, count, ", ".join(parts))

    def _score_batch_generate(self, requests: list) -> list[ScoreResult]:
        inputs = self._inputs(requests)
        if self.sampling is None:
            return self._generate(inputs, None)
        n = self.sampling.num_samples
        keys = [item_key(r.system_prompt, r.user_prompt, r.original, r.edited) for r in requests]
        # One generate call for every sample: generate encodes the images and expands the batch to
        # n rows per item (item 0's samples, then item 1's, ...); each row draws with its own seed.
        sampler = SeededSampler(self.sampling, [key for key in keys for _ in range(n)],
                                [k for _ in keys for k in range(n)])
        answers = self._generate(inputs, sampler, n)
        return [combine_samples(answers[i * n:(i + 1) * n]) for i in range(len(requests))]

    def _generate(self, inputs, sampler: SeededSampler | None, samples: int = 1) -> list[ScoreResult]:
        """One answer per row of ``inputs`` (``samples`` per row, in a row's order): greedy, or drawn by
        ``sampler`` (which decides every token: the multinomial draw that several samples need
        takes the token it leaves); parsed."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        prompt_length = inputs["input_ids"].shape[1]
        options, stop = {}, None
        decided = self._decided()
        if self.stop_early and decided is not None:
            stop = _ScoreWritten(self._answer_tokenizer, self.closing_token_ids(), prompt_length, decided)
            options["stopping_criteria"] = StoppingCriteriaList([stop])
        if sampler is not None:
            options["logits_processor"] = LogitsProcessorList([sampler])
        if samples > 1:
            options.update(num_return_sequences=samples, do_sample=True)
        with torch.inference_mode():
            generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                            **{"do_sample": False, **options})
        # Left padding puts every prompt's end at the same column, so one slice trims them all.
        trimmed = list(generated[:, prompt_length:])
        ends = self._end_token_ids()
        # A row with no end token used up max_new_tokens (a row cut by stop_early is decided already).
        cut = stop.ends if stop is not None and stop.ends else [None] * len(trimmed)
        exhausted = [end is None and len(row) >= self.max_new_tokens and not ends.intersection(row.tolist())
                     for row, end in zip(trimmed, cut)]
        trimmed = [row if end is None else row[:end] for row, end in zip(trimmed, cut)]
        texts = self._answer_tokenizer.batch_decode(trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return [self._parse(text, ran_out) for text, ran_out in zip(texts, exhausted)]

    def _decided(self):
        """``text -> bool``: the answer is decided, nothing after it can change its parse; None when
        the parser in use cannot say (then generation is not stopped early)."""
        parse = self._parse_override
        if parse is None:
            fields_decided = json_decided
        elif callable(getattr(parse, "decided", None)):
            fields_decided = parse.decided
        else:
            return None
        thinking = self.thinking

        def decided(text: str) -> bool:
            if thinking or THINK_CLOSE in text or THINK_OPEN in text:
                text = text.partition(THINK_CLOSE)[2] if THINK_CLOSE in text else None
            return text is not None and bool(fields_decided(text))

        return decided

    def _parse(self, text: str, exhausted: bool = False) -> ScoreResult:
        try:
            answer = answer_text(text, opened=self.thinking)
        except ScoreParseError as exc:
            reason = str(exc)
            if exhausted:
                reason = (f"the judge was still thinking when max_new_tokens={self.max_new_tokens} ran out (no "
                          f"{THINK_CLOSE}, so no answer yet): raise max_new_tokens (thinking checkpoints often "
                          f"need {THINKING_MIN_NEW_TOKENS} or more)")
            return ScoreResult.failure(f"unparseable judge answer: {reason}", raw_output=text)
        try:
            if self._parse_override is not None:
                score = float(self._parse_override(answer))
            else:
                score = parse_score(answer, *self.score_range)
        except ScoreParseError as exc:
            hint = f" (the answer used all max_new_tokens={self.max_new_tokens})" if exhausted else ""
            return ScoreResult.failure(f"unparseable judge answer{hint}: {exc}", raw_output=text)
        return ScoreResult(score=score, raw_output=text, answer=answer)

    def _check_thinking(self) -> bool:
        """Whether the chat template opens a <think> block; logits mode refuses one (before loading weights)."""
        with self._processor_lock:
            prompt = self.processor.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True)
        thinking = opens_thinking(prompt)
        if thinking:
            if self.score_mode == "logits":
                raise ValueError(f"{self.model_path}: {LOGITS_WITH_THINKING}")
            logger.info("%s has a thinking chat template: scores are read after </think>", self.model_path)
            if self.max_new_tokens < THINKING_MIN_NEW_TOKENS:
                logger.warning("thinking checkpoint with max_new_tokens=%d: answers still thinking at that length "
                               "fail; %d or more is usual", self.max_new_tokens, THINKING_MIN_NEW_TOKENS)
        return thinking

    def _configure_generation(self) -> None:
        """Greedy unless ``sampling`` is set: the checkpoint's own sampling and penalties are dropped."""
        config, dropped = greedy_generation_config(self.model.generation_config)
        self.model.generation_config = config
        shown = ", ".join(f"{k}={v}" for k, v in dropped.items())
        if self.score_mode == "logits":
            return
        if self.sampling is None:
            logger.info("judging greedily (same answer for the same input)%s; set sampling to sample",
                        f": ignoring the checkpoint's generation_config ({shown})" if dropped else "")
        else:
            s = self.sampling
            logger.info("judging by sampling: temperature=%g, top_p=%g, top_k=%d, seed=%d, %d sample(s) per item, "
                        "score = their mean%s", s.temperature, s.top_p, s.top_k, s.seed, s.num_samples,
                        f" (the checkpoint's generation_config is not used: {shown})" if dropped else "")

    def _end_token_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        return set() if ids is None else {ids} if isinstance(ids, int) else set(ids)

    def closing_token_ids(self) -> frozenset[int]:
        """Ids of the tokens that can close a JSON object (contain ``}``)."""
        if self._closing_ids is None:
            vocab = self._answer_tokenizer.get_vocab()
            self._closing_ids = frozenset(i for token, i in vocab.items() if "}" in token)
        return self._closing_ids
