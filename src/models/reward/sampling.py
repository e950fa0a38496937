"""Greedy judging by default, and an opt-in ``sampling`` option with self-ensembling.

Checkpoints ship a ``generation_config.json`` made for chat: Qwen3-VL-8B-Instruct's samples
(temperature 0.7, top_p 0.8, top_k 20), others add a repetition penalty. A judge should give the
same score to the same input, so ``greedy_generation_config`` replaces it with a plain greedy one
(only the end, padding and start token ids are kept) and the model logs what it dropped.

``reward_model.params.sampling`` samples instead, as EditScore's self-ensembling does:

    sampling: {temperature: 0.7, top_p: 0.8, top_k: 20, seed: 0, num_samples: 4}

Each item is answered ``num_samples`` times, in one ``generate`` call (``num_return_sequences``:
the images are encoded once per item, whatever the number of samples); its score is the mean of
the samples' scores and its
result keeps every sample (``ScoreResult.samples``, ``ScoreResult.spread``: their standard
deviation). Draws come from ``SeededSampler``: the Gumbel-max trick (the argmax of the filtered
logits plus Gumbel noise is a draw from their softmax) with noise seeded by the seed, the item's
own inputs, the sample's number and the step, so an item gets the same samples whatever batch,
order or worker it is scored in.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from .results import ScoreResult

SAMPLING_KEYS = ("temperature", "top_p", "top_k", "seed", "num_samples")
# Kept from the checkpoint's generation config: they say where an answer ends, not how it is chosen.
KEPT_GENERATION_KEYS = ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id")
SAMPLING_KEYS_OF_CHECKPOINTS = ("do_sample", "temperature", "top_p", "top_k", "min_p", "typical_p",
                                "repetition_penalty", "no_repeat_ngram_size", "num_beams", "length_penalty")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    seed: int = 0
    num_samples: int = 1

    @classmethod
    def from_config(cls, value) -> "Sampling | None":
        if value is None:
            return None
        problems = sampling_problems(value)
        if problems:
            raise ValueError("invalid sampling: " + "; ".join(problems))
        return cls(**value)


def sampling_problems(value) -> list[str]:
    """What is wrong with a ``sampling`` value (null, or a mapping of SAMPLING_KEYS)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"sampling must be null (greedy) or a mapping of {list(SAMPLING_KEYS)}, got {value!r}"]
    problems = []
    unknown = sorted(set(value) - set(SAMPLING_KEYS))
    if unknown:
        problems.append(f"sampling: unknown keys {unknown} (accepted: {', '.join(SAMPLING_KEYS)})")
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    is_number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    checks = {
        "temperature": (lambda v: is_number(v) and v > 0, "a number above 0"),
        "top_p": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
        "top_k": (lambda v: is_int(v) and v >= 0, "a non-negative integer (0: off)"),
        "seed": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
        "num_samples": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    }
    for key, (ok, expected) in checks.items():
        if key in value and not ok(value[key]):
            problems.append(f"sampling.{key} must be {expected}, got {value[key]!r}")
    return problems


def greedy_generation_config(checkpoint_config):
    """A greedy GenerationConfig keeping only the checkpoint's token ids, and the sampling or
    penalty settings of the checkpoint's that it drops ({name: value})."""
    from transformers import GenerationConfig

    kept = {k: getattr(checkpoint_config, k, None) for k in KEPT_GENERATION_KEYS}
    config = GenerationConfig(do_sample=False, num_beams=1, **{k: v for k, v in kept.items() if v is not None})
    defaults = GenerationConfig()
    dropped = {}
    for key in SAMPLING_KEYS_OF_CHECKPOINTS:
        value = getattr(checkpoint_config, key, None)
        if value is not None and value != getattr(defaults, key, None) and not (key == "do_sample" and not value):
            dropped[key] = value
    return config, dropped


def item_key(*parts) -> bytes:
    """A digest of an item's inputs (prompts, PIL images, a tuple of images shown in order): what its
    samples are seeded by. A tuple of one image is that image."""
    digest = hashlib.sha256()
    for part in parts:
        _feed(digest, part)
    return digest.digest()


def _feed(digest, part) -> None:
    if part is None:
        digest.update(b"\0none")
    elif isinstance(part, (tuple, list)) and len(part) == 1:
        _feed(digest, part[0])
    elif isinstance(part, (tuple, list)):  # several images shown before the edited one, in order
        digest.update(b"\0t" + str(len(part)).encode())
        for image in part:
            _feed(digest, image)
    elif isinstance(part, str):
        digest.update(b"\0s" + part.encode())
    else:  # a PIL image
        digest.update(f"\0i{part.mode}{part.size}".encode())
        digest.update(part.tobytes())


class SeededSampler:
    """A logits processor that draws each row's next token itself, one noise stream per row.

    Temperature, top-k and top-p filter the float32 logits; the argmax of those plus Gumbel noise
    seeded by (seed, row key, sample, step) is a draw from the filtered softmax. The processor
    returns 0 for the drawn token and -inf for every other, so greedy decoding and multinomial
    sampling (``do_sample``, which ``num_return_sequences`` needs) both take exactly that token.
    ``sample``: the sample number of every row, or one for all rows.
    """

    def __init__(self, settings: Sampling, row_keys: list[bytes], sample: int | list[int]) -> None:
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.warpers = [TemperatureLogitsWarper(settings.temperature)]
        if settings.top_k:
            self.warpers.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1:
            self.warpers.append(TopPLogitsWarper(settings.top_p))
        samples = [sample] * len(row_keys) if isinstance(sample, int) else list(sample)
        self.seeds = [hashlib.sha256(f"{settings.seed}:{k}:".encode() + key).digest()
                      for key, k in zip(row_keys, samples)]
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        noise = torch.empty_like(scores)
        generator = torch.Generator(device=scores.device)
        for row, seed in enumerate(self.seeds):
            step_seed = hashlib.sha256(seed + self.step.to_bytes(4, "little")).digest()
            generator.manual_seed(int.from_bytes(step_seed[:8], "little") & ((1 << 63) - 1))
            uniform = torch.rand(scores.shape[-1], generator=generator, device=scores.device)
            noise[row] = -torch.log(-torch.log(uniform.clamp(1e-20, 1 - 1e-7)))
        self.step += 1
        drawn = (scores + noise).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, -math.inf).scatter_(-1, drawn, 0.0)


def combine_samples(samples: list[ScoreResult]) -> ScoreResult:
    """One result from an item's samples: their mean, or a failure naming the samples that failed."""
    n = len(samples)
    if n == 1:
        return samples[0]
    raw = "\n".join(f"[sample {k + 1}] {s.raw_output}" for k, s in enumerate(samples))
    failed = [f"sample {k + 1} of {n}: {s.error}" for k, s in enumerate(samples) if not s.ok]
    if failed:
        return ScoreResult(score=math.nan, raw_output=raw, error="; ".join(failed), samples=samples)
    scores = [s.score for s in samples]
    mean = sum(scores) / n
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
    raw += f"\n[samples] scores {', '.join(f'{s:g}' for s in scores)}: mean {mean:.4f}, spread (std) {spread:.4f}"
    return ScoreResult(score=mean, raw_output=raw, samples=samples)
