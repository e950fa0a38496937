"""Pairwise verdicts: reading them from a judge's answer, combining the two orders a pair is judged in,
what the judge's order-dependence looks like (consistency, position bias), and verdicts from two
pointwise scores.

    parse_verdict("I prefer the second. [[B>A]]")           # "B>A"
    line = combine("A>B", "B>A")                             # the (B, A) answer, as shown: B first
    line["verdict"], line["consistent"]                      # "A=B=Good", False
    pointwise_verdict(7.0, 6.8, margin=0.5, good=5.0)        # "A=B=Good"

The four verdicts are GenAI-Bench's (TIGER-AI-Lab/GenAI-Bench: an edit A better, B better, both equally
good, both equally bad); ``A`` and ``B`` always name the pair's editors in the pair's own order, whatever
order the judge saw them in.

Both orders. A pair (A, B) is judged shown as (A, B) (``forward``) and as (B, A); the second answer is
mapped back (``swap``: its "A>B" means B > A) into ``backward``.

- consistent: both orders parsed and ``forward == backward``; null when either did not parse.
- surviving verdict: the agreed verdict when consistent. An inconsistent pair is a tie, because the
  judge's preference (or its tie) did not survive a swap of positions: ``A=B=Bad`` when either order
  said ``A=B=Bad`` (the judge found neither edit acceptable at least once), else ``A=B=Good`` (each
  order either picked a winner, so found an acceptable edit, or said both are good). Null when either
  order did not parse: a pair needs both orders to say anything.
- order-consistency rate: consistent pairs / pairs with both orders parsed.
- position bias: of the single-order answers that pick a winner (ties prefer no position), the share
  that pick the edit shown first, minus 0.5. 0: none; +0.5: always the first shown; -0.5: always the
  second. Both orders of every pair count, so an editor's own quality cancels out.

Pointwise -> pairwise (``pointwise_verdict``): A>B when score_A - score_B > margin, B>A when it is below
-margin, otherwise a tie: ``A=B=Good`` when both scores are >= ``good``, else ``A=B=Bad``. The defaults
(``default_margin``, ``default_good``) are 5% of the score range and its midpoint: 0.5 and 5 on 0-10.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

A_WINS, B_WINS, BOTH_GOOD, BOTH_BAD = "A>B", "B>A", "A=B=Good", "A=B=Bad"
VERDICTS = (A_WINS, B_WINS, BOTH_GOOD, BOTH_BAD)
TIES = (BOTH_GOOD, BOTH_BAD)

_BRACKETED = re.compile(r"\[\[([^\[\]]{1,40})\]\]")
# A verdict's text once spaces are gone, letters upper-cased: "A>B", "B<A", "A=B=GOOD", "B=A=BAD", ...
_ORDER = re.compile(r"^([AB])([<>])([AB])$")
_TIE = re.compile(r"^(?:A=B|B=A)=(GOOD|BAD)$")
# A plain answer: the verdict alone, maybe after "verdict:" or "answer:", maybe quoted or ending in a full stop.
_PLAIN_LABEL = re.compile(r"^(?:final\s+)?(?:verdict|answer)\s*[:=]\s*", re.I)


def normalize(text: str) -> str | None:
    """The verdict ``text`` spells (``"a > b"``, ``"B<A"``, ``"A = B = good"``), or None."""
    squeezed = re.sub(r"\s+", "", text).upper()
    order = _ORDER.match(squeezed)
    if order:
        left, sign, right = order.groups()
        if left == right:
            return None
        better = left if sign == ">" else right
        return A_WINS if better == "A" else B_WINS
    tie = _TIE.match(squeezed)
    if tie:
        return BOTH_GOOD if tie.group(1) == "GOOD" else BOTH_BAD
    return None


def parse_verdict(answer: str | None) -> str | None:
    """The verdict of a judge's answer, or None (unparseable).

    Bracketed first: every ``[[...]]`` in the answer; they must all spell the same verdict (two
    different ones are no answer). Else the plain form: the whole answer is one verdict, maybe after
    ``verdict:``/``answer:``, quoted or with a full stop (``"A>B"``, ``"Verdict: A=B=Bad."``). Anything
    else, a verdict mentioned inside prose included, is None: prose quotes the options it chooses from.
    """
    if not answer:
        return None
    bracketed = _BRACKETED.findall(answer)
    if bracketed:
        found = {normalize(b) for b in bracketed}
        return found.pop() if len(found) == 1 and None not in found else None
    plain = _PLAIN_LABEL.sub("", answer.strip()).strip().strip("`'\"*").rstrip(".").strip()
    return normalize(plain) if plain else None


def verdict_decided(answer: str) -> bool:
    """Whether ``answer`` already holds a bracketed verdict: generation can stop (``stop_early``)."""
    return bool(_BRACKETED.search(answer))


def swap(verdict: str | None) -> str | None:
    """The verdict with A and B exchanged: an answer given with the pair shown as (B, A), in (A, B) terms."""
    return {A_WINS: B_WINS, B_WINS: A_WINS}.get(verdict, verdict)


def surviving(forward: str | None, backward: str | None) -> tuple[str | None, bool | None]:
    """The pair's verdict and whether its two orders agree, from both orders in the pair's own terms
    (``backward`` already mapped back): see the module's docstring."""
    if forward is None or backward is None:
        return None, None
    if forward == backward:
        return forward, True
    return (BOTH_BAD if BOTH_BAD in (forward, backward) else BOTH_GOOD), False


def combine(forward: str | None, backward_shown: str | None) -> dict:
    """The record fields of one pair judged in both orders: ``forward`` as shown (A first),
    ``backward_shown`` as the judge gave it with B shown first (mapped back here)."""
    backward = swap(backward_shown)
    verdict, consistent = surviving(forward, backward)
    return {"verdict": verdict, "forward": forward, "backward": backward, "consistent": consistent}


def order_consistency(records: Iterable[dict]) -> dict:
    """``rate``: consistent / ``compared`` (pairs whose both orders parsed); None without any."""
    flags = [r["consistent"] for r in records if r.get("consistent") is not None]
    return {"rate": sum(flags) / len(flags) if flags else None, "consistent": sum(flags), "compared": len(flags)}


def position_bias(records: Iterable[dict]) -> dict:
    """``value``: the share of winner-picking single-order answers that picked the edit shown first, minus
    0.5 (None without any); ``first_preferred`` and ``decisive`` are the counts it is made of."""
    first = decisive = 0
    for r in records:
        # forward was shown (A, B): A>B picks the first shown; backward was shown (B, A): B>A does.
        for verdict, first_wins in ((r.get("forward"), A_WINS), (r.get("backward"), B_WINS)):
            if verdict in (A_WINS, B_WINS):
                decisive += 1
                first += verdict == first_wins
    return {"value": first / decisive - 0.5 if decisive else None, "first_preferred": first, "decisive": decisive}


def default_margin(score_range) -> float:
    """5% of the score range: 0.5 on 0-10."""
    return 0.05 * (float(score_range[1]) - float(score_range[0]))


def default_good(score_range) -> float:
    """The middle of the score range: 5 on 0-10."""
    return (float(score_range[0]) + float(score_range[1])) / 2


def pointwise_verdict(score_a: float | None, score_b: float | None, margin: float, good: float) -> str | None:
    """The verdict two pointwise scores give (module docstring); None when either is missing."""
    if score_a is None or score_b is None:
        return None
    difference = score_a - score_b
    if difference > margin:
        return A_WINS
    if difference < -margin:
        return B_WINS
    return BOTH_GOOD if score_a >= good and score_b >= good else BOTH_BAD


def win_rates(records: Iterable[dict]) -> list[dict]:
    """Per editor pair (in the records' own A/B order): A's wins, B's wins, ties, unparsed, and A's win
    rate = (A wins + ties / 2) / (pairs with a verdict); None without any."""
    table: dict[tuple[str, str], Counter] = {}
    for r in records:
        counts = table.setdefault((r["a"], r["b"]), Counter())
        verdict = r.get("verdict")
        counts["a_wins" if verdict == A_WINS else "b_wins" if verdict == B_WINS else
               "ties" if verdict in TIES else "null"] += 1
    rows = []
    for (a, b), c in table.items():
        decided = c["a_wins"] + c["b_wins"] + c["ties"]
        rows.append({"a": a, "b": b, "a_wins": c["a_wins"], "b_wins": c["b_wins"], "ties": c["ties"],
                     "null": c["null"], "a_win_rate": (c["a_wins"] + c["ties"] / 2) / decided if decided else None})
    return rows


def summarize(records: list[dict], **fields) -> dict:
    """The summary of a pairwise run's records: counts of each verdict (``null``: no verdict), the
    order-consistency rate and the position bias (both None for pointwise verdicts, judged in no order),
    and the win rates per editor pair; ``fields`` (source, settings, margin ...) are added as they are."""
    counts = Counter(r.get("verdict") or "null" for r in records)
    return {**fields, "pairs": len(records), "verdicts": {v: counts[v] for v in (*VERDICTS, "null")},
            "order_consistency": order_consistency(records), "position_bias": position_bias(records),
            "win_rates": win_rates(records)}


class VerdictParser:
    """``parse=`` for a judge's ``batch_evaluate``: an answer's verdict as its index in ``VERDICTS`` (the
    judge contract's "score"; ``verdict_of`` reads it back), ``ScoreParseError`` when it has none;
    ``decided`` lets ``stop_early`` end an answer once its bracketed verdict is written."""

    def __call__(self, answer: str) -> float:
        from ..models.reward.parsing import ScoreParseError

        verdict = parse_verdict(answer)
        if verdict is None:
            raise ScoreParseError(f"no verdict ({', '.join(f'[[{v}]]' for v in VERDICTS)}) in {answer[:200]!r}")
        return float(VERDICTS.index(verdict))

    @staticmethod
    def decided(answer: str) -> bool:
        return verdict_decided(answer)


def verdict_of(result) -> str | None:
    """The verdict a judge's ``ScoreResult`` holds under ``VerdictParser``; None when it failed."""
    return VERDICTS[int(result.score)] if result.ok else None
