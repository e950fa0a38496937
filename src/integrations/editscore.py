"""EditScore's call shape (github.com/VectorSpaceLab/EditScore, editscore/__init__.py @ 6e0f1b9), scored
by editjudge's ``editscore`` rubric: replace ``from editscore import EditScore`` by ::

    from editjudge.integrations.editscore import EditScore
    scorer = EditScore(config="config.yaml", device="cuda:0")     # a local judge (build_judge)
    scorer = EditScore(url="http://127.0.0.1:8000")   # or a server whose config says rubric: editscore
    scorer.evaluate([source, edited], instruction)
    # {"prompt_following", "consistency", "perceptual_quality", "overall", "SC_reasoning", "PQ_reasoning"}
    scorer.batch_evaluate([[source, edited], ...], [instruction, ...])
    # [{"SC_score", "PQ_score", "O_score", "SC_score_reasoning", "PQ_score_reasoning", "SC_raw_output",
    #   "PQ_raw_output"}, ...]

Scores are on EditScore's 0-10 scale (its 0-25 answers divided by 2.5): SC = min(prompt following,
consistency), PQ = min(naturalness, artifacts), overall = sqrt(SC * PQ). Where EditScore guesses a
score for an answer it cannot read, this raises :class:`editjudge.client.RewardScoringError`.
Several samples per prompt (EditScore's ``num_pass``) are the judge's ``sampling.num_samples``.
"""

from __future__ import annotations

import json
import re

from ..client import RewardClient, RewardScoringError
from ..models.reward.rubrics import get_rubric

RUBRIC = "editscore"
_REASONING = re.compile(r'"reasoning"\s*:\s*"((?:[^"\\]|\\.)*)"', re.S)
_SECTION = re.compile(r"^\[(semantics|quality)\] ", re.M)


def reasoning_of(answer: str | None) -> str | None:
    """The ``"reasoning"`` string of a judge's JSON answer, or None when it has none."""
    match = _REASONING.search(answer or "")
    if match is None:
        return None
    try:
        return json.loads(f'"{match.group(1)}"')
    except ValueError:
        return match.group(1)


def _sections(raw_output: str | None) -> dict[str, str]:
    """The server's ``raw_output`` of a rubric (``[semantics] ...\\n\\n[quality] ...``) by prompt name."""
    text = raw_output or ""
    marks = list(_SECTION.finditer(text))
    return {m.group(1): text[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(text)].rstrip("\n")
            for i, m in enumerate(marks)}


class EditScore:
    """``evaluate`` / ``batch_evaluate`` as EditScore has them; exactly one of ``config`` (a YAML with
    a ``reward_model``), ``judge`` (a loaded judge) or ``url`` (a reward server)."""

    def __init__(self, config: str | None = None, device: str = "cuda:0", *, judge=None, url: str | None = None,
                 token: str | None = None, timeout: float = 300.0) -> None:
        if sum(x is not None for x in (config, judge, url)) != 1:
            raise ValueError("EditScore needs exactly one of config=, judge= or url=")
        self.rubric = get_rubric(RUBRIC)
        self.client = RewardClient(url, token=token, timeout=timeout) if url is not None else None
        if config is not None:
            from ..config import load_reward_model_config
            from ..models.reward.judge import build_judge

            judge, _ = build_judge(load_reward_model_config(config), device, quiet=True)
        self.judge = judge

    def _score(self, pairs: list, instructions: list[str]) -> list[tuple[dict, dict]]:
        """(sub-scores, raw answers by prompt) per item; an item without a score raises."""
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"item {i}: expected [source image, edited image]")
        sources, edited = [p[0] for p in pairs], [p[1] for p in pairs]
        if self.client is not None:
            results = self.client.score(edited, sources, instructions, rubric=RUBRIC)
            items = [(r.score, r.sub_scores, _sections(r.raw_output), r.error) for r in results]
        else:
            from ..models.reward.rubrics import score_with_rubric

            results = score_with_rubric(self.judge, self.rubric, edited, instructions, sources)
            items = [(r.score, r.sub_scores, r.raw_outputs, r.error) for r in results]
        failed = [i for i, item in enumerate(items) if item[0] is None]
        if failed:
            raise RewardScoringError(f"{len(failed)} of {len(items)} items have no score; first: item {failed[0]}: "
                                     f"{items[failed[0]][3]}")
        return [(sub, raw) for _, sub, raw, _ in items]

    def evaluate(self, image_prompts, text_prompt: str) -> dict:
        (sub, raw), = self._score([list(image_prompts)], [text_prompt])
        return {"prompt_following": sub["PF"], "consistency": sub["C"], "perceptual_quality": sub["PQ"],
                "overall": sub["overall"], "SC_reasoning": reasoning_of(raw.get("semantics")),
                "PQ_reasoning": reasoning_of(raw.get("quality"))}

    def batch_evaluate(self, image_prompts: list, text_prompt: list[str]) -> list[dict]:
        if len(image_prompts) != len(text_prompt):
            raise ValueError(f"{len(image_prompts)} image pairs but {len(text_prompt)} instructions")
        return [{"SC_score": sub["SC"], "PQ_score": sub["PQ"], "O_score": sub["overall"],
                 "SC_score_reasoning": reasoning_of(raw.get("semantics")),
                 "PQ_score_reasoning": reasoning_of(raw.get("quality")),
                 "SC_raw_output": raw.get("semantics"), "PQ_raw_output": raw.get("quality")}
                for sub, raw in self._score(list(image_prompts), list(text_prompt))]
