"""editjudge: benchmark instruction-based image editors and score every edit with a VLM judge.

    from editjudge import Qwen3VLRewardModel
    judge = Qwen3VLRewardModel("Qwen/Qwen3-VL-8B-Instruct", batch_size=8)
    scores = judge.batch_score(images, instructions=["make the sky blue", ...])

The command line is ``editjudge --config config.yaml`` (or ``python -m editjudge``). torch and
transformers load only when a model class is first used.
"""

from __future__ import annotations

__version__ = "0.2.0"

_LAZY = {
    "Qwen3VLRewardModel": "models.reward",
    "ScoreResult": "models.reward",
    "ScoringStats": "models.reward",
    "get_reward_model_class": "models.reward",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'editjudge' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
