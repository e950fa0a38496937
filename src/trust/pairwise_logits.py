"""Pairwise preference probabilities in logits mode: the judge answers one letter, "A" or "B", and the
next token's distribution gives how likely it prefers each edit; both orders are combined into an
order-debiased probability, a verdict, and the order-dependence figures.

    line = combine_probabilities(0.70, 0.40, tie_band=0.05)   # P("A") shown (A, B); P("A") shown (B, A)
    line["p_forward"], line["p_backward"]                      # 0.70, 0.60: P(A is better) in each order
    line["probability"], line["verdict"]                       # 0.65, "A>B"

The question (``USER_PROMPT``) asks for the letter of the better edit and the assistant turn is prefilled
up to it (``CHOICES``: nothing after the chat template's generation prompt, which ends in a newline, so
"A" and "B" are single tokens as the answer's first token, for Qwen's tokenizers and the tiny test
judge's). P("A") and P("B") are read from the next-token softmax (float32, the whole vocabulary) and
renormalised over the two: P(first shown) + P(second shown) = 1. An order whose P("A") + P("B") is at
most ``--min-letter-mass`` (default 1e-6) has no probability (the judge answers something else): that
order counts as unparseable, its raw line keeps the mass and both shares.

Both orders, in the pair's own A/B terms:

- ``p_forward`` = P(first shown) when shown (source, A, B); ``p_backward`` = P(second shown) when shown
  (source, B, A); each is P(A is better) in that order.
- ``probability`` (order-debiased) = (p_forward + p_backward) / 2. A judge that adds a constant lean
  towards the first shown edit to every answer has it cancel out: it raises p_forward and lowers
  p_backward by the same amount.
- ``verdict`` = ``A>B`` when probability > 0.5 + tie_band (``--tie-band``, default 0.05), ``B>A`` when it is < 0.5 - tie_band, else a
  tie, written ``A=B=Good``: a question between two letters cannot say that both edits are bad, and a
  tie counts as half a win either way in the win rates and the Bradley-Terry ranking whatever it is
  called. ``forward`` and ``backward`` are the same rule applied to each order's own probability.
- ``consistent`` = both orders prefer the same edit: p_forward and p_backward both above 0.5, or both
  below (a probability of exactly 0.5 prefers neither: not consistent). Null when either order failed.
- position bias (``position_bias``) = the mean over both orders of P(first shown) - 0.5, averaged over
  the pairs with both orders: per pair (p_forward + (1 - p_backward)) / 2 - 0.5 = (p_forward -
  p_backward) / 2. 0: none; +0.5: the first shown always gets all the probability; -0.5: the second.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..models.reward.logits import Choices
from .pairwise import A_WINS, B_WINS, BOTH_GOOD

# Our own words, as the verdict prompt's (pairwise_run.USER_PROMPT), asking for one letter.
USER_PROMPT = (
    "The first image is the source. The second image is edit A and the third is edit B; both were made "
    'from the source with this instruction: "{instruction}"\n'
    "Which edit carries out the instruction better, keeps what the instruction does not ask to change, "
    "and looks more natural? Answer with one letter only: A if edit A is better, B if edit B is better."
)
CHOICES = Choices(("A", "B"), prefix="")


def letters(min_mass: float) -> Choices:
    """``CHOICES`` with an answer failing when P("A") + P("B") is at most ``min_mass``."""
    return Choices(CHOICES.texts, CHOICES.prefix, min_mass)


def probability_verdict(probability: float | None, tie_band: float) -> str | None:
    """The verdict a probability that A is better gives (module docstring); None for None."""
    if probability is None:
        return None
    if probability > 0.5 + tie_band:
        return A_WINS
    if probability < 0.5 - tie_band:
        return B_WINS
    return BOTH_GOOD


def combine_probabilities(first_forward: float | None, first_backward: float | None, tie_band: float) -> dict:
    """The record fields of one pair from P(first shown) in each order: ``first_forward`` shown (A, B),
    ``first_backward`` shown (B, A) (so the probability that B is better); None where that order failed."""
    p_forward = first_forward
    p_backward = None if first_backward is None else 1.0 - first_backward
    both = p_forward is not None and p_backward is not None
    probability = (p_forward + p_backward) / 2 if both else None
    consistent = ((p_forward - 0.5) * (p_backward - 0.5) > 0) if both else None
    return {"verdict": probability_verdict(probability, tie_band), "forward": probability_verdict(p_forward, tie_band),
            "backward": probability_verdict(p_backward, tie_band), "consistent": consistent,
            "probability": probability, "p_forward": p_forward, "p_backward": p_backward, "tie_band": tie_band}


def position_bias(records: Iterable[dict]) -> dict:
    """``value``: the mean over pairs with both orders of (P(first shown | forward) + P(first shown |
    backward)) / 2 - 0.5; None without any. ``pairs``: how many pairs it averages."""
    biases = [(r["p_forward"] - r["p_backward"]) / 2 for r in records
              if r.get("p_forward") is not None and r.get("p_backward") is not None]
    return {"value": sum(biases) / len(biases) if biases else None, "pairs": len(biases)}


def mean_probabilities(records: Iterable[dict]) -> dict[tuple[str, str], float | None]:
    """Per editor pair (A, B): the mean order-debiased probability that A is better; None without any."""
    table: dict[tuple[str, str], list[float]] = {}
    for r in records:
        values = table.setdefault((r["a"], r["b"]), [])
        if r.get("probability") is not None:
            values.append(r["probability"])
    return {pair: sum(v) / len(v) if v else None for pair, v in table.items()}


def logits_summary(summary: dict, records: list[dict], tie_band: float, min_mass: float) -> dict:
    """``pairwise.summarize``'s summary made the logits mode's: the probability-based position bias, the
    tie band, the least letter mass, and each editor pair's mean probability (``mean_probability`` in its ``win_rates`` row)."""
    means = mean_probabilities(records)
    rows = [dict(row, mean_probability=means.get((row["a"], row["b"]))) for row in summary["win_rates"]]
    return dict(summary, score_mode="logits", tie_band=tie_band, min_letter_mass=min_mass, position_bias=position_bias(records), win_rates=rows)
