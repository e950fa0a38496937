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
# Each type's config check, importable without torch (the run's plan prints before torch loads).
REWARD_MODEL_CHECKS = {"qwen3_vl": "editjudge.models.reward.settings:config_problems"}
REWARD_MODEL_FILE_CHECKS = {"qwen3_vl": "editjudge.models.reward.settings:model_path_problems"}
# Each type's ``identity_of`` where its class imports torch (the plan computes the settings hash first).
REWARD_MODEL_IDENTITIES = {"qwen3_vl": "editjudge.models.reward.settings:identity_of"}


def reward_identity(name: str, params: dict) -> dict:
    """Everything that can change the answers of a ``name`` judge built with ``params`` (its ``identity_of``)."""
    if name not in REWARD_MODEL_IDENTITIES:
        return get_reward_model_class(name).identity_of(params)
    module, _, attr = REWARD_MODEL_IDENTITIES[name].partition(":")
    return getattr(importlib.import_module(module), attr)(params)


def reward_file_problems(name: str, params: dict) -> list[str]:
    """Whether the model files of ``params`` are there (folder, HF cache, hub), without loading them."""
    if name not in REWARD_MODEL_FILE_CHECKS:  # a remote judge (an API) has no files here
        return []
    module, _, attr = REWARD_MODEL_FILE_CHECKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)(params)


def reward_config_problems(name: str, params: dict, files: bool = True) -> list[str]:
    """What is wrong with ``params`` for the reward model type ``name``, without loading it; ``files``:
    also whether the model's files are there (a local folder's, the HF cache's or the hub's)."""
    if name not in REWARD_MODEL_CHECKS:  # a type without a light check: its class's own (may import more)
        from .settings import PIPELINE_PARAMS  # read by the pipeline (rubric, ...), not by the judge

        return get_reward_model_class(name).config_problems({k: v for k, v in params.items()
                                                             if k not in PIPELINE_PARAMS})
    module, _, attr = REWARD_MODEL_CHECKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)(params, files=files)


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
           "get_reward_model_class", "parse_score", "reward_config_problems"]
