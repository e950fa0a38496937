"""Logits mode: the expected score from one forward pass over a prompt prefilled up to the score.

The assistant turn is prefilled with ``{"score": `` and the next token's distribution over the
digits gives the score's expected value. "10" is two tokens for Qwen's tokenizers: with
``append_digit`` the input also ends in "1", so the same pass gives P("0" | "1") at the last
position, while causal attention leaves the first digit's distribution, one position earlier, as
it was. ``score_tokens`` checks how the judge's tokenizer writes every score of the range, once at
load: each digit must be one token; "10" is either "1" + "0" or one token of its own, whose
probability then counts for 10 too (P(10) = P("10") + P("1") P("0" | "1")); any other way of
writing a score is refused with an error naming it.

``Choices`` and ``choice_results`` ask a question answered by one token (``editjudge pairwise``'s "A"
or "B"): the assistant turn prefilled with the choices' ``prefix``, the next token's probabilities of
the given single-token texts, renormalised over them.

The kept positions' logits and their softmax are computed in float32 (``Float32Head``), whatever
the model's dtype: an 8B model's logits are in the tens, where bfloat16 steps by 0.125, enough to
move a digit's probability by several percent (``bench/logits_precision.py`` measures the gap).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ScoreTokens:
    """How the judge's tokenizer writes the scores: the ten digits' ids, and the id of "10" when it is
    one token (None when it is "1" followed by "0")."""

    digits: list[int]
    ten: int | None = None


def score_tokens(tokenizer, low: int, high: int, vocabulary: int | None = None) -> ScoreTokens:
    """Check how ``tokenizer`` writes every score in ``low``..``high`` (integers in 0-10) and return
    their token ids; raises ValueError naming a score it writes otherwise than logits mode reads.
    ``vocabulary``: the model's number of output logits (a token id at or beyond it is refused)."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    digits = single_token_ids(tokenizer, [str(d) for d in range(10)])
    ten = None
    if high == 10:
        written = encode("10")
        if len(written) == 1:
            ten = written[0]
        elif written != [digits[1], digits[0]]:
            names = getattr(tokenizer, "convert_ids_to_tokens", lambda ids: ids)(written)
            raise ValueError(f'score_mode \'logits\' reads a score of 10 as the token "10" or as "1" then "0"; this '
                             f'tokenizer writes "10" as {names} (ids {written}). Use score_mode: generate, or a '
                             "score_range that ends below 10")
    if vocabulary is not None:
        beyond = [i for i in digits + ([ten] if ten is not None else []) if i >= vocabulary]
        if beyond:
            raise ValueError(f"score_mode 'logits': the tokenizer's score token ids {beyond} are beyond the model's "
                             f"{vocabulary} output logits (the tokenizer does not match the model)")
    return ScoreTokens(digits, ten)


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


def expected_scores(logits: torch.Tensor, digit_ids: list[int], low: int, high: int,
                    ten_id: int | None = None) -> list[ScoreResult]:
    """One result per row of ``logits`` (rows x positions x vocabulary; the last two positions when
    ``high`` is 10, else the last): the expected score over ``low``..``high``, or a failure when the
    judge puts (almost) no probability on a score. ``ten_id``: the token "10" where the tokenizer
    has one; its probability at the first position counts for 10, with P("1") P("0" | "1")."""
    needs_ten = high == 10
    digits = torch.tensor(digit_ids, device=logits.device)
    logits = logits.float()
    first = torch.softmax(logits[:, 0], dim=-1)
    probs = first[:, digits].cpu()
    p_ten_token = first[:, ten_id].cpu() if needs_ten and ten_id is not None else None
    p_zero_after_one = torch.softmax(logits[:, 1], dim=-1)[:, digits[0]].cpu() if needs_ten else None
    results = []
    for row in range(logits.shape[0]):
        weight_of: dict[int, float] = {}
        for d in range(10):
            if d == 1 and p_zero_after_one is not None:
                q = float(p_zero_after_one[row])
                for value, weight in ((1, 1.0 - q), (10, q)):
                    if low <= value <= high:
                        weight_of[value] = weight_of.get(value, 0.0) + float(probs[row, d]) * weight
            elif low <= d <= high:
                weight_of[d] = float(probs[row, d])
        if p_ten_token is not None:
            weight_of[10] = weight_of.get(10, 0.0) + float(p_ten_token[row])
        values = sorted(weight_of)
        weights = [weight_of[v] for v in values]
        mass = sum(weights)
        raw = f"logits: P(score digit)={mass:.4f} " + " ".join(
            f"{v}:{w / mass:.3f}" if mass > 0 else f"{v}:0" for v, w in zip(values, weights))
        if mass <= NO_SCORE_MASS:
            results.append(ScoreResult.failure("judge put no probability on a score digit", raw_output=raw))
            continue
        expected = sum(v * w for v, w in zip(values, weights)) / mass
        results.append(ScoreResult(score=expected, raw_output=raw))
    return results


@dataclass(frozen=True)
class Choices:
    """A question answered by one token: the assistant turn is prefilled with ``prefix`` (after the chat
    template's generation prompt) and the next token's probabilities of ``texts`` (each exactly one token of
    the judge's tokenizer) are read, renormalised over ``texts``. An answer whose choices together get at
    most ``min_mass`` of the probability fails: the judge is answering something else, and the ratio of
    two vanishing probabilities says nothing. ``ids``: their token ids, once resolved against a tokenizer
    (``resolve``). Pass to a judge's ``batch_evaluate(choices=...)`` (logits mode)."""

    texts: tuple[str, ...]
    prefix: str = ""
    min_mass: float = NO_SCORE_MASS
    ids: tuple[int, ...] | None = None

    def resolve(self, tokenizer, vocabulary: int | None = None) -> "Choices":
        """The same choices with their token ids; ValueError when one is not one token of ``tokenizer``
        or its id is beyond the model's ``vocabulary`` output logits."""
        if len(self.texts) < 2 or len(set(self.texts)) != len(self.texts):
            raise ValueError(f"choices must be at least two different texts, got {self.texts}")
        ids = single_token_ids(tokenizer, list(self.texts))
        if len(set(ids)) != len(ids):
            raise ValueError(f"choices {self.texts} share a token id ({ids})")
        if vocabulary is not None and max(ids) >= vocabulary:
            raise ValueError(f"choice token ids {ids} are beyond the model's {vocabulary} output logits")
        return Choices(tuple(self.texts), self.prefix, self.min_mass, tuple(ids))


def choice_results(logits: torch.Tensor, choices: Choices) -> list[ScoreResult]:
    """One result per row of ``logits`` (rows x positions x vocabulary; the last position is read): the
    softmax over the whole vocabulary in float32, then each choice's probability renormalised over the
    choices (``probabilities``, in ``choices.texts`` order; ``score`` is the first choice's). A failure
    when the choices together get at most ``choices.min_mass``: the judge is not answering the question."""
    probs = torch.softmax(logits[:, -1].float(), dim=-1)[:, list(choices.ids)].double().cpu()
    results = []
    for row in probs:
        mass = float(row.sum())
        shares = [float(p) / mass if mass > 0 else 0.0 for p in row]
        raw = f"logits: P(choices)={mass:.4g} " + " ".join(f"{t!r}:{s:.4f}" for t, s in zip(choices.texts, shares))
        if not mass > choices.min_mass:
            results.append(ScoreResult.failure(f"judge put no more than {choices.min_mass:g} of the probability "
                                               "on the choices", raw_output=raw))
            continue
        results.append(ScoreResult(score=shares[0], raw_output=raw, probabilities=dict(zip(choices.texts, shares))))
    return results


def choice_result_from_logprobs(top: dict[str, float], choices: Choices) -> ScoreResult:
    """``choice_results`` from a server's ``top_logprobs`` (token text -> log-probability) of one answer's
    first token: a choice absent from them has probability 0 (below the listed ones); one more entry
    holds every other token, so that the softmax gives back the server's probabilities of the choices."""
    listed = [top.get(text, -math.inf) for text in choices.texts]
    rest = 1.0 - sum(math.exp(v) for v in listed)
    row = listed + [math.log(rest) if rest > 1e-12 else -math.inf]
    logits = torch.tensor([[row]], dtype=torch.float64)
    return choice_results(logits, Choices(choices.texts, choices.prefix, choices.min_mass,
                                          tuple(range(len(choices.texts)))))[0]
