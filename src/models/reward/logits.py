"""Logits mode: the expected score from one forward pass over a prompt prefilled up to the score.

The assistant turn is prefilled with ``{"score": `` and the next token's distribution over the
digits gives the score's expected value. "10" is two tokens: with ``append_digit`` the input also
ends in "1", so the same pass gives P("0" | "1") at the last position, while causal attention
leaves the first digit's distribution, one position earlier, as it was.

The kept positions' logits and their softmax are computed in float32 (``Float32Head``), whatever
the model's dtype: an 8B model's logits are in the tens, where bfloat16 steps by 0.125, enough to
move a digit's probability by several percent (``bench/logits_precision.py`` measures the gap).
"""

from __future__ import annotations

import logging

import torch

from .results import ScoreResult

logger = logging.getLogger(__name__)

NO_SCORE_MASS = 1e-6  # below this probability on the score digits, the judge is not answering a score


def single_token_ids(tokenizer, texts: list[str]) -> list[int]:
    """The token id of each text, which must be exactly one token."""
    ids = []
    for text in texts:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"score_mode 'logits' needs {text!r} to be one token; the tokenizer gives {encoded}")
        ids.append(encoded[0])
    return ids


HEAD_CHUNK_ROWS = 16384  # vocabulary rows upcast at a time: 256 MiB of float32 for a 4096-wide head


def float32_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   chunk_rows: int = HEAD_CHUNK_ROWS) -> torch.Tensor:
    """``hidden @ weight.T + bias`` in float32, the weight upcast a slice of rows at a time."""
    h = hidden.float()
    out = torch.empty(*h.shape[:-1], weight.shape[0], dtype=torch.float32, device=h.device)
    for start in range(0, weight.shape[0], chunk_rows):
        rows = weight[start:start + chunk_rows].to(device=h.device, dtype=torch.float32)
        out[..., start:start + rows.shape[0]] = h @ rows.T
    if bias is not None:
        out += bias.to(device=h.device, dtype=torch.float32)
    return out


class Float32Head:
    """While entered, the model's output head (lm_head) returns float32 logits computed in float32
    from its (bfloat16 or float16) input hidden states, instead of logits rounded to the model's dtype.

        with Float32Head(model):
            logits = model(**inputs, logits_to_keep=2).logits    # float32
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.head = model.get_output_embeddings()
        self._handle = None

    def __enter__(self) -> "Float32Head":
        self._handle = self.head.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    @staticmethod
    def _hook(module, args, output):
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.is_meta or not weight.dtype.is_floating_point:
            logger.warning("the output head's weight cannot be read (%s): logits stay in the model's dtype",
                           type(weight).__name__)
            return output
        if output.dtype == torch.float32 and weight.dtype == torch.float32:
            return output
        return float32_logits(args[0], weight, getattr(module, "bias", None))


def append_digit(inputs, token_id: int):
    """Append ``token_id`` to every row of a left-padded batch (and a 1 to its attention mask)."""
    rows, columns = inputs["input_ids"].shape
    for key, value in list(inputs.items()):
        if isinstance(value, torch.Tensor) and value.shape[:2] == (rows, columns):
            fill = token_id if key == "input_ids" else int(key == "attention_mask")
            inputs[key] = torch.cat([value, torch.full((rows, 1), fill, dtype=value.dtype)], dim=1)
    return inputs


def expected_scores(logits: torch.Tensor, digit_ids: list[int], low: int, high: int) -> list[ScoreResult]:
    """One result per row of ``logits`` (rows x positions x vocabulary; the last two positions when
    ``high`` is 10, else the last): the expected score over ``low``..``high``, or a failure when the
    judge puts (almost) no probability on a score digit."""
    needs_ten = high == 10
    digits = torch.tensor(digit_ids, device=logits.device)
    logits = logits.float()
    probs = torch.softmax(logits[:, 0], dim=-1)[:, digits].cpu()
    p_zero_after_one = torch.softmax(logits[:, 1], dim=-1)[:, digits[0]].cpu() if needs_ten else None
    results = []
    for row in range(logits.shape[0]):
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
        if mass <= NO_SCORE_MASS:
            results.append(ScoreResult.failure("judge put no probability on a score digit", raw_output=raw))
            continue
        expected = sum(v * w for v, w in zip(values, weights)) / mass
        results.append(ScoreResult(score=expected, raw_output=raw))
    return results
