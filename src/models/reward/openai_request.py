"""The request an OpenAI-compatible judge sends for one item: images encoded, messages laid out, body filled.

``OpenAIRewardModel`` (``openai_judge``) sends these requests, caches and reads their answers; this module
only builds them, with no network and no state of its own, so what a server is asked is in one place:

- each image loaded, resized (``image_area``, then Qwen's ``smart_resize`` when ``min_pixels`` or
  ``max_pixels`` is set) and encoded as a base64 PNG or JPEG data URL, with the SHA-256 of its bytes;
- one user turn holding the images (a source first, a pairwise tuple in its order) and the prompt's text,
  after a system turn unless the system prompt is empty;
- the body: sampling fields, ``max_tokens`` and ``response_format`` (generate mode), or one token after
  a prefilled assistant turn with its ``top_logprobs`` (logits mode).

``without_images`` gives the messages with each data URL replaced by its hash, for the response cache's key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re

from PIL import Image

from ...images import ImageLoadError, load_image
from .results import images_before

IMAGE_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg")}  # Pillow format, data URL type
PATCH_FACTOR = 32  # Qwen3-VL: patch 16 x merge 2
MAX_TOP_LOGPROBS = 20  # OpenAI's limit and vLLM's default --max-logprobs
_ANSWER_FORM = re.compile(r'\{\s*"\w+"\s*:\s*N(?:\s*,\s*"\w+"\s*:\s*N)*\s*\}')


def smart_resize(height: int, width: int, factor: int = PATCH_FACTOR, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Qwen-VL's resize rule (as in transformers): sides multiples of ``factor``, area in range, aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ImageLoadError(f"aspect ratio over 200: {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def answer_schema(user_prompt: str, low: float, high: float) -> dict | None:
    """A JSON schema for the answer form a prompt asks for (``{"a": N, "b": N}``), or None."""
    match = _ANSWER_FORM.search(user_prompt)
    if not match:
        return None
    names = re.findall(r'"(\w+)"', match.group(0))
    number = {"type": "number", "minimum": low, "maximum": high}
    return {"type": "object", "properties": {n: number for n in names}, "required": names,
            "additionalProperties": False}


class ChatRequests:
    """Builds the ``/chat/completions`` requests of ``OpenAIRewardModel`` (a mixin: no state of its own).

    Reads the judge's settings from ``self``: ``model``, ``temperature``, ``seed``, ``extra_body``,
    ``max_new_tokens``, ``response_format``, ``score_range``, ``image_area``, ``min_pixels``,
    ``max_pixels``, ``resize_factor``, ``image_format`` and ``text_before_images``.
    """

    def _image_part(self, source) -> tuple[dict, str]:
        """An ``image_url`` content part (base64 PNG or JPEG) and the SHA-256 of its bytes (for the cache key)."""
        image = load_image(source)
        if self.image_area is not None:  # this area, the aspect ratio kept, sides truncated
            ratio = image.width / image.height
            width = max(1, int(math.sqrt(self.image_area * ratio)))
            height = max(1, int(width / ratio))
            if (width, height) != image.size:
                image = image.resize((width, height), Image.Resampling.BICUBIC)
        if self.min_pixels is not None or self.max_pixels is not None:
            height, width = smart_resize(image.height, image.width, factor=self.resize_factor,
                                         min_pixels=self.min_pixels or self.resize_factor ** 2,
                                         max_pixels=self.max_pixels or 16384 * 16384)
            if (width, height) != image.size:
                image = image.resize((width, height), Image.Resampling.BICUBIC)
        pil_format, mime = IMAGE_FORMATS[self.image_format]
        buffer = io.BytesIO()
        image.save(buffer, format=pil_format)  # JPEG: Pillow's defaults (quality 75, 4:2:0), as GEdit-Bench
        data = buffer.getvalue()
        url = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        return {"type": "image_url", "image_url": {"url": url}}, hashlib.sha256(data).hexdigest()

    def _messages(self, edited, original, system_prompt: str, user_prompt: str) -> tuple[list[dict], list[str]]:
        content, hashes = [], []
        # A source given is sent first (compare_with_original, or a rubric prompt with_source); a tuple of
        # images (a pairwise request: source, first edit) is sent in its order. Each image's hash, in
        # order, keys the response cache: other images or another order is another request.
        sources = images_before(original) + [edited]
        for source in sources:
            part, digest = self._image_part(source)
            content.append(part)
            hashes.append(digest)
        text = {"type": "text", "text": user_prompt}
        if self.text_before_images:  # GEdit-Bench's GPT client: the prompt, then the images
            content.insert(0, text)
        else:
            content.append(text)
        user = {"role": "user", "content": content}
        # As the transformers judge: no system turn for an empty system prompt (the official VIEScore
        # prompts). An empty one is not the same prompt: Qwen2.5-VL's template puts its default system
        # text where no system turn is given.
        if not system_prompt:
            return [user], hashes
        return [{"role": "system", "content": system_prompt}, user], hashes

    def _sampling(self) -> dict:
        body = {**self.extra_body, "model": self.model}
        if self.temperature is not None:  # null: none sent, the server's default applies
            body["temperature"] = self.temperature
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    def _generate_body(self, messages: list[dict], user_prompt: str, parse) -> dict:
        body = dict(self._sampling(), messages=messages)
        if self.max_new_tokens is not None:  # null: none sent, the server's default applies
            body["max_tokens"] = self.max_new_tokens
        if self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif self.response_format == "json_schema":
            schema = answer_schema(user_prompt, *self.score_range)
            body["response_format"] = ({"type": "json_schema", "json_schema": {"name": "judge_answer",
                                                                                "schema": schema, "strict": True}}
                                       if schema else {"type": "json_object"})
        return body

    def _logits_body(self, messages: list[dict], prefill: str) -> dict:
        """One token after a prefilled assistant turn, with the top log-probabilities of that token. Nothing
        to prefill: the answer's first token, after the generation prompt (a chat template continuing an
        empty final turn would cut nothing and leave the turn closed; transformers' also strips the end)."""
        if not prefill:
            return dict(self._sampling(), messages=messages, max_tokens=1, logprobs=True, top_logprobs=MAX_TOP_LOGPROBS)
        return dict(self._sampling(), messages=messages + [{"role": "assistant", "content": prefill}],
                    max_tokens=1, logprobs=True, top_logprobs=MAX_TOP_LOGPROBS,
                    continue_final_message=True, add_generation_prompt=False)


def without_images(messages: list[dict], hashes: list[str]) -> list[dict]:
    """The messages with each image's data URL replaced by its hash (the cache key stays small)."""
    digests = iter(hashes)
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image_sha256", "sha256": next(digests)} if part.get("type") == "image_url" else part
                       for part in content]
        out.append(dict(message, content=content))
    return out
