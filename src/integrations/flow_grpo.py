"""Flow-GRPO (github.com/yifan123/flow_grpo): the judge as a reward its ``multi_score`` can use as is.

Read against flow_grpo/rewards.py (commit 94e23ee), scripts/train_flux_kontext.py (74db691) and
scripts/train_qwenimage_edit_plus.py (9dcdc35). ``multi_score(device, score_dict)`` builds each
reward from its table with ``fn(device)`` (when the factory has a ``device`` parameter) and calls it
as ``fn(images, prompts, metadata)``: ``images`` a float (N, C, H, W) tensor in [0, 1], ``prompts``
the edit instructions, ``metadata`` one dict per image. The edit scripts keep the source image as
``metadata[i]["image"]``, a path relative to the dataset folder; their ``ref_images`` is not always
the source (in the edit-plus script it is the second condition image), so it is not used here.

Either put the factory in the trainer's table::

    from editjudge.integrations.flow_grpo import editjudge_score
    score_functions["editjudge"] = editjudge_score        # config.reward_fn = {"editjudge": 1.0}

or use this module's ``multi_score`` in place of the trainer's (it knows the one reward, "editjudge")::

    from editjudge.integrations.flow_grpo import multi_score
    reward_fn = multi_score(accelerator.device, config.reward_fn)

Configured by ``EDITJUDGE_URL``, ``EDITJUDGE_DATASET_ROOT`` and ``EDITJUDGE_SERVER_TOKEN``
(:mod:`editjudge.integrations.env`). The scores are the judge's raw scores: the trainer normalises
them itself (per prompt after gathering every rank). An item the judge could not score raises
:class:`editjudge.client.RewardScoringError`: a made-up reward would train the policy on it.
"""

from __future__ import annotations

import numpy as np

from ..client import RewardScoringError
from .env import client_from_env, dataset_root_from_env, resolve_source

NAME = "editjudge"


def editjudge_score(device=None):
    """The reward table's factory: ``fn(images, prompts, metadata) -> (scores, info)``.

    ``device`` is accepted because the trainer passes it; the judge runs in the server. The client
    and the dataset root are read from the environment here, so a mistake stops the trainer at start.
    """
    del device
    client = client_from_env()
    root = dataset_root_from_env()

    def fn(images, prompts, metadata):
        prompts, metadata = list(prompts), list(metadata)
        n = len(images)
        if len(prompts) != n or len(metadata) != n:
            raise ValueError(f"{n} images, {len(prompts)} prompts and {len(metadata)} metadata entries")
        for i, meta in enumerate(metadata):
            if not isinstance(meta, dict) or "image" not in meta:
                raise ValueError(f"metadata[{i}] has no 'image' (the source image's path under the dataset root)")
        sources = [resolve_source(root, meta["image"]) for meta in metadata]
        results = client.score(list(images), sources, prompts)
        failed = [i for i, r in enumerate(results) if r.score is None]
        if failed:
            raise RewardScoringError(f"{len(failed)} of {n} items have no score; first: item {failed[0]}: "
                                     f"{results[failed[0]].error}")
        scores = np.array([r.score for r in results], dtype=np.float32)
        return scores, {"sub_scores": [r.sub_scores for r in results]}

    return fn


def multi_score(device=None, score_dict=None):
    """A reward function shaped as the trainer's: ``fn(images, prompts, metadata, ref_images=None,
    only_strict=True) -> ({"editjudge": scores, "avg": weighted sum}, {})``.

    ``score_dict`` maps reward names to weights, as the trainer's config does; only ``editjudge``
    is known here (default ``{"editjudge": 1.0}``).
    """
    score_dict = {NAME: 1.0} if score_dict is None else dict(score_dict)
    unknown = sorted(set(score_dict) - {NAME})
    if unknown or not score_dict:
        raise ValueError(f"editjudge's multi_score knows only {NAME!r}; got {sorted(score_dict)}")
    weight = float(score_dict[NAME])
    score = editjudge_score(device)

    def fn(images, prompts, metadata, ref_images=None, only_strict=True):
        del ref_images, only_strict  # not the source in every script (see the module's docstring); geneval only
        scores, _ = score(images, prompts, metadata)
        return {NAME: scores, "avg": weight * scores}, {}

    return fn
