"""Building what the Qwen3-VL judge is fed: each item's conversation, its images opened, the model
inputs of a batch (the processor's chat template, left-padded; on the prefetch thread when on) and
each item's length in tokens, estimated from image sizes without decoding an image.

A mixin of ``Qwen3VLRewardModel`` (kept apart so that the model class reads as the batching
recipe); its methods use the judge's processor, lock, stats and settings. ``_Request`` and
``_Batch`` are re-exported by ``qwen3_vl.py``.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ...images import ImageLoadError, load_image

from .batching import _image_dims
from .logits import append_digit
from .results import ScoreResult, images_before

# The judge's own logger (qwen3_vl.py): its level decides whether each item's visual tokens are logged.
logger = logging.getLogger(__name__.removesuffix("_inputs"))


@dataclass
class _Request:
    """One item to score, with its images already opened (``original``: None, one image, or a tuple)."""

    index: int
    edited: object
    original: object | None
    system_prompt: str
    user_prompt: str


class _Batch(list):
    """Requests scored together, with the model inputs built ahead of time (or the error building them).

    A slice is a plain list: the halves of a split batch build their own inputs.
    """

    inputs = None
    error: BaseException | None = None


def bound_pixels(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Bound the images' resized area (``min_pixels``/``max_pixels``) in ``processor``'s image processor."""
    if min_pixels is not None or max_pixels is not None:
        size = dict(processor.image_processor.size)
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        processor.image_processor.size = size


class InputsMixin:
    """Methods of ``Qwen3VLRewardModel`` that build its inputs; they use its processor, lock and settings."""

    _choices = None  # a batch_evaluate call's resolved ``logits.Choices``: their prefix ends the prompt

    def _build_messages(self, edited_image, system_prompt: str, user_prompt: str, original_image=None) -> list[dict]:
        """A system turn and a user turn holding the image(s) then the prompt (``text_before_images``: the
        prompt then the image(s)), nothing else: the images ``original_image`` holds (``images_before``) in
        order, then the edited one."""
        content = [{"type": "image", "image": image} for image in images_before(original_image)]
        content.append({"type": "image", "image": edited_image})
        text = {"type": "text", "text": user_prompt}
        if getattr(self, "text_before_images", False):
            content.insert(0, text)
        else:
            content.append(text)
        user = {"role": "user", "content": content}
        if not system_prompt:  # "" (the official VIEScore prompts): no system message at all
            return [user]
        return [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}, user]


    def _open(self, index, edited, original, system_prompt, user_prompt) -> _Request | ScoreResult:
        try:
            edited_image = load_image(edited)
            # A source given with an item is always shown: a prompt that asks for it must get it.
            if isinstance(original, (tuple, list)):
                original_image = tuple(load_image(image) for image in original)
            else:
                original_image = load_image(original) if original is not None else None
        except ImageLoadError as exc:
            return ScoreResult.failure(str(exc))
        return _Request(index, edited_image, original_image, system_prompt, user_prompt)

    def _images(self, requests: list[_Request]) -> list:
        images = []
        for r in requests:
            images += images_before(r.original)
            images.append(r.edited)
        return images

    def _prepare_batch(self, indices, edited, originals, systems, users) -> tuple[_Batch, dict[int, ScoreResult]]:
        """Open the images of ``indices`` and build their model inputs (on the prefetch thread when on)."""
        started = time.perf_counter()
        batch, failed = _Batch(), {}
        for i in indices:
            request = self._open(i, edited[i], originals[i], systems[i], users[i])
            if isinstance(request, ScoreResult):
                failed[i] = request
            else:
                batch.append(request)
        if batch:
            try:
                batch.inputs = self._prepare_inputs(batch)
            except Exception as exc:  # noqa: BLE001 - raised again where the batch is scored, to fall back there
                batch.error = exc
        self.stats.prepare_seconds += time.perf_counter() - started
        return batch, failed

    def _prepare_inputs(self, requests: list[_Request]):
        """The model inputs for ``requests``, on the CPU: left-padded token ids, pixels and grids."""
        with self._processor_lock, self._left_padding():
            if self.score_mode == "logits":
                inputs = self._prepare_logits(requests)
            else:
                messages = [self._build_messages(r.edited, r.system_prompt, r.user_prompt, r.original)
                            for r in requests]
                inputs = self.processor.apply_chat_template(
                    messages,
                    tokenize=True,
                    add_generation_prompt=True,
                    return_dict=True,
                    return_tensors="pt",
                    processor_kwargs={"padding": True},
                )
        if logger.isEnabledFor(logging.DEBUG):
            self._log_visual_tokens(requests, inputs)
        return inputs

    def _inputs(self, requests: list[_Request]):
        if isinstance(requests, _Batch):
            if requests.error is not None:
                raise requests.error
            if requests.inputs is not None:
                return requests.inputs.to(self.device)
        return self._prepare_inputs(requests).to(self.device)

    def _estimated_lengths(self, edited, originals, systems, users) -> list[int]:
        """Each item's prompt length in tokens, from image sizes and prompts, without decoding any image."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        image_processor = self.processor.image_processor
        patch, merge = image_processor.patch_size, image_processor.merge_size
        size = image_processor.size
        min_pixels, max_pixels = size["shortest_edge"], size["longest_edge"]

        def image_tokens(source) -> int:
            dims = _image_dims(source)
            if dims is None:
                return 0  # it fails when opened; where it sorts does not matter
            width, height = dims
            try:
                h, w = smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
            except ValueError:
                return 0
            return (h // patch) * (w // patch) // (merge * merge)

        text_tokens: dict[tuple, int] = {}
        lengths = []
        for i, source in enumerate(edited):
            before = images_before(originals[i])
            key = (systems[i], users[i], len(before))
            if key not in text_tokens:
                # The template with one placeholder token per image; each placeholder becomes the image's tokens.
                messages = self._build_messages("", systems[i], users[i], ("",) * len(before))
                with self._processor_lock:
                    text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                    ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
                text_tokens[key] = len(ids) - (len(before) + 1)
            lengths.append(text_tokens[key] + image_tokens(source) + sum(image_tokens(image) for image in before))
        return lengths

    @contextmanager
    def _left_padding(self):
        tokenizer = self.processor.tokenizer
        original_side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        try:
            yield
        finally:
            tokenizer.padding_side = original_side

    def _resolved_choices(self, choices):
        """``choices`` (a ``logits.Choices`` or None) with their token ids, checked against the judge."""
        if choices is not None and self.score_mode != "logits":
            raise ValueError("choices= needs score_mode 'logits' (the next token's distribution is read)")
        vocabulary = self.model.get_output_embeddings().weight.shape[0]
        return None if choices is None else choices.resolve(self.processor.tokenizer, vocabulary)

    def _prefilled_texts(self, requests: list[_Request]) -> list[str]:
        prompts = [
            self.processor.apply_chat_template(
                self._build_messages(r.edited, r.system_prompt, r.user_prompt, r.original),
                tokenize=False, add_generation_prompt=True,
            )
            for r in requests
        ]
        prefix = self.logits_prefix if self._choices is None else self._choices.prefix
        return [p + prefix for p in prompts]

    def _prepare_logits(self, requests: list[_Request]):
        inputs = self.processor(text=self._prefilled_texts(requests), images=self._images(requests),
                                padding=True, return_tensors="pt")
        if self.score_range[1] == 10 and self._choices is None:
            inputs = append_digit(inputs, self._digit_ids[1])
        return inputs
