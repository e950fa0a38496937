"""Thinking checkpoints: a chat template that opens a ``<think>`` block before the answer.

Qwen3-VL-*-Thinking's generation prompt ends in ``<think>\\n``: the judge reasons first, closes
the block with ``</think>`` and only then answers. ``opens_thinking`` tells such a template from
an ordinary one (a template that writes an empty, closed ``<think></think>`` does not count), and
``thinking_problem`` checks a config without loading the model: logits mode reads the first
answer token, which in a thinking template is reasoning, so that pairing is a configuration error.

    from editjudge.models.reward.thinking import opens_thinking
    opens_thinking(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .parsing import THINK_CLOSE, THINK_OPEN

logger = logging.getLogger(__name__)

# A conversation with no reasoning in it: any <think> in its rendering comes from the template.
PROBE_MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Rate this."}]}]
# Thinking checkpoints write hundreds of reasoning tokens before the answer; below this, warn.
THINKING_MIN_NEW_TOKENS = 1024
LOGITS_WITH_THINKING = ("score_mode 'logits' cannot judge with a thinking chat template (it opens a <think> "
                        "block, so the next token is reasoning, not the score): use score_mode 'generate' with a "
                        f"max_new_tokens large enough to get past </think> (at least {THINKING_MIN_NEW_TOKENS})")


def opens_thinking(prompt: str) -> bool:
    """True when a rendered generation prompt ends inside an open ``<think>`` block."""
    return prompt.rfind(THINK_OPEN) > prompt.rfind(THINK_CLOSE)


def template_opens_thinking(chat_template: str) -> bool:
    """Render ``chat_template`` (a Jinja string) for a probe conversation and check its end."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[PROBE_MESSAGES], chat_template=chat_template,
                                        add_generation_prompt=True)
    return opens_thinking(rendered[0])


def local_chat_template(model_path: str) -> str | None:
    """The chat template of a local model folder, or of a hub id already in the local cache; None
    when there is none to read without downloading (nothing is fetched)."""
    names = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")
    folder = Path(os.path.expanduser(model_path))
    files = []
    if folder.is_dir():
        files = [folder / name for name in names]
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            files = [Path(p) for p in (try_to_load_from_cache(model_path, name) for name in names)
                     if isinstance(p, str)]
        except Exception:  # noqa: BLE001 - an id the hub library cannot read: nothing cached
            return None
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jinja":
            return text
        try:
            template = json.loads(text).get("chat_template")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(template, str):
            return template
    return None


def thinking_problem(params: dict) -> str | None:
    """The configuration error of logits mode on a thinking checkpoint, found without loading it:
    from its chat template when one is on disk, else from a model name that says ``Thinking``."""
    if params.get("score_mode") != "logits" or not isinstance(params.get("model_path"), str):
        return None
    path = params["model_path"]
    template = local_chat_template(path)
    if template is not None:
        try:
            thinking = template_opens_thinking(template)
        except Exception as exc:  # noqa: BLE001 - checked again on the loaded processor
            logger.debug("cannot render the chat template of %s (%s); checked again when it loads", path, exc)
            return None
    else:
        thinking = "thinking" in path.lower()
    return LOGITS_WITH_THINKING if thinking else None
