"""What decides a score and its hash, recorded on every score line: a line scored under other settings
is redone, and moved aside to ``scores.previous.jsonl`` when the parts are merged (``editjudge.merge``)."""

from __future__ import annotations

from .config import Config
from .resume import digest


def scoring_settings(config: Config) -> dict:
    """What decides a score: ``reward.judge.scoring_identity`` of the configured judge."""
    from .models.reward.judge import scoring_identity

    return scoring_identity(config.reward_model)


def scoring_settings_hash(config: Config) -> str:
    return digest(scoring_settings(config))
