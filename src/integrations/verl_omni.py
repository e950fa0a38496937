"""verl-omni (github.com/verl-project/verl-omni): the judge as a custom reward function.

Read against verl_omni/reward_loop/reward_manager/visual.py and
examples/flowgrpo_trainer/qwen_image_edit/prepare_data.py (commit a1139ba). The visual reward
manager awaits ``compute_score(data_source=..., solution_image=..., ground_truth=...,
extra_info=...)`` once per sample when the function is a coroutine function, with
``solution_image`` the generated image as a uint8 (C, H, W) tensor; a dict answer gives the reward
as ``score`` and its other keys as extra info. The edit example's rows keep the instruction as
``reward_model.ground_truth`` and ``extra_info["instruction"]``, and the condition image's file
name as ``extra_info["image"]``, relative to the input folder's ``images/``: set
``EDITJUDGE_DATASET_ROOT`` to that folder. Launch with::

    reward.custom_reward_function.path=pkg://editjudge.integrations.verl_omni
    reward.custom_reward_function.name=compute_score

The score is the judge's raw score (the trainer normalises); an item the judge could not score
raises :class:`editjudge.client.RewardScoringError` rather than inventing a reward.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os

from ..client import RewardScoringError
from .env import DATASET_ROOT_ENV, TOKEN_ENV, URL_ENV, client_from_env, dataset_root_from_env, resolve_source


@functools.lru_cache(maxsize=4)
def _configured(_key: tuple):
    return client_from_env(), dataset_root_from_env()


def _setup():
    """One client per process and configuration (the environment may differ between launches)."""
    return _configured(tuple(os.environ.get(name) for name in (URL_ENV, DATASET_ROOT_ENV, TOKEN_ENV)))


def _one_image(solution_image):
    shape = tuple(getattr(solution_image, "shape", ()))
    if len(shape) == 4:
        if shape[0] != 1:
            raise ValueError(f"an edit is one image; solution_image has shape {shape}")
        solution_image = solution_image[0]
    elif len(shape) != 3:
        raise ValueError(f"solution_image must be a (C, H, W) image, got shape {shape}")
    return solution_image


def instruction_of(ground_truth, extra_info: dict) -> str:
    instruction = extra_info.get("instruction") or ground_truth
    if not isinstance(instruction, str) or not instruction:
        raise ValueError("no instruction: neither extra_info['instruction'] nor ground_truth is a non-empty string")
    return instruction


async def compute_score(data_source, solution_image, ground_truth, extra_info=None, **kwargs) -> dict:
    """``{"score": judge score, **numeric sub-scores}`` for one edit. ``data_source`` and the reward
    router's keyword arguments are accepted and unused: the judge runs in ``editjudge serve``."""
    del data_source, kwargs
    extra_info = extra_info or {}
    if "image" not in extra_info:
        raise ValueError("extra_info has no 'image' (the condition image's path under $EDITJUDGE_DATASET_ROOT)")
    client, root = _setup()
    source = resolve_source(root, extra_info["image"])
    edited = _one_image(solution_image)
    results = await asyncio.to_thread(client.score, [edited], [source], [instruction_of(ground_truth, extra_info)])
    result = results[0]
    if result.score is None:
        raise RewardScoringError(f"the judge could not score {extra_info['image']!r}: {result.error}")
    extra = {f"editjudge/{name}": float(value) for name, value in (result.sub_scores or {}).items()
             if isinstance(value, (int, float)) and math.isfinite(value)}
    return {"score": float(result.score), **extra}
