"""Reward models. ``REWARD_MODELS`` maps a config ``type`` to its implementation, imported lazily."""

from __future__ import annotations

import importlib

from .parsing import ScoreParseError, parse_score
from .results import ScoreResult, ScoringStats

REWARD_MODELS = {
    "qwen3_vl": "editjudge.models.reward.qwen3_vl:Qwen3VLRewardModel",
    "openai": "editjudge.models.reward.openai_judge:OpenAIRewardModel",
    "vllm": "editjudge.models.reward.vllm_judge:VLLMRewardModel",
}


def get_reward_model_class(name: str):
    """The class registered under ``name``; an unknown name lists the known ones."""
    if name not in REWARD_MODELS:
        raise ValueError(f"unknown reward model type {name!r}; known: {sorted(REWARD_MODELS)}")
    module, _, attr = REWARD_MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str):
    # torch and transformers load only when the model class is actually used.
    if name == "Qwen3VLRewardModel":
        return get_reward_model_class("qwen3_vl")
    raise AttributeError(name)


__all__ = ["REWARD_MODELS", "Qwen3VLRewardModel", "ScoreParseError", "ScoreResult", "ScoringStats",
           "get_reward_model_class", "parse_score"]
