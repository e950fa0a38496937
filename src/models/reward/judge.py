"""One judge, one path: the only place editjudge builds a judge from a configuration, and scores with it.

    from editjudge.config import load_reward_model_config
    from editjudge.models.reward.judge import build_judge, judge_items

    judge, rubric = build_judge(load_reward_model_config("config.yaml"), "cuda:0")
    fields = judge_items(judge, rubric, edited_images, instructions, source_images)

``judge_shown`` asks the same judge about several images per item (``editjudge pairwise``: a source
and two edits) with a prompt and an answer parser of the caller's.

The score stage (``score_stage.score_shard``) and the reward server (``editjudge serve``) both build
through ``build_judge`` and score through ``judge_items``, so one ``reward_model`` block gives the same
rubric (``viescore_prompts_dir`` included), the same judge parameters and the same device (a group of
GPUs included) whichever door a run comes in by. Each backend declares what the builder needs to know
about it as class attributes, never found by looking at its signature:

- ``writes_files``: it keeps logs or a response cache under the run's ``output_dir``;
- ``runs_in_process``: it computes in the process that holds it (the transformers judge), rather than
  waiting on a server (vLLM, an API): ``editjudge serve`` gives each of its replicas a process;
- ``resolved_settings(params, device)``: what only the device decides (``dtype: auto``), recorded beside
  each score so that a score made under other settings is redone;
- ``speed_params``: the settings that change its speed only, and ``identity_of(params)``: everything
  else that can change an answer (``reward.identity``). The scoring settings hash is the digest of
  ``scoring_identity``, and an instance's ``identity()`` (its ``identity_of`` and ``resolved_settings``)
  keys a remote judge's response cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .settings import PIPELINE_PARAMS


def judge_devices(reward_model) -> list:
    """One entry per judge replica (a score worker, or a server replica of ``editjudge serve``): a device,
    or a group of devices one replica spans. ``reward_model.devices``, or the judge's own
    ``params.device`` when ``devices`` is ``auto``; a ``type: vllm`` judge's servers each on GPUs of their
    own (``config.vllm_servers``: tensor parallel, the inherited ``CUDA_VISIBLE_DEVICES``)."""
    from ...config import judge_device_spec, vllm_servers
    from ...parallel import resolve_devices

    spec = judge_device_spec(reward_model)
    if reward_model.type == "vllm":
        count = None
        if spec == "auto":
            import torch

            count = torch.cuda.device_count()
        return [server.device for server in vllm_servers(reward_model, count)]
    return resolve_devices(spec)


def judge_rubric(params: dict):
    """The rubric ``reward_model.params`` asks for: built in, or the official VIEScore prompts read from
    ``viescore_prompts_dir``."""
    from .rubrics import get_rubric
    from .viescore_files import rubric_spec

    return get_rubric(rubric_spec(params))


def judge_class(reward_model):
    from . import get_reward_model_class

    return get_reward_model_class(reward_model.type)


def judge_params(reward_model, device: Any, *, output_dir: str | None = None, quiet: bool = False) -> dict:
    """The parameters the backend is built with: ``reward_model.params`` less what the scoring around the
    judge reads (the rubric), on ``device`` (one device or a group); ``output_dir`` for a backend that keeps
    files; ``quiet``: no progress bars of the judge's own (a stage's bar or a server's log replaces them)."""
    params = {k: v for k, v in reward_model.params.items() if k not in PIPELINE_PARAMS}
    params["device"] = device
    if output_dir is not None and judge_class(reward_model).writes_files:
        params.setdefault("output_dir", str(output_dir))
    if quiet:
        params["show_progress"] = False
    return params


def scoring_identity(reward_model) -> dict:
    """What decides a score made with ``reward_model`` (a ``RewardModelConfig``), device aside: the
    backend's identity for its params (``identity_of``: settings, weights, library versions), the rubric's
    full text (the official VIEScore files' with ``viescore_prompts_dir``; editing a built-in rubric
    rescores) and the judge code's version. The scoring settings hash is its digest."""
    from . import reward_identity
    from .settings import SCORING_VERSION

    params = reward_model.params
    identity = {"type": reward_model.type,
                "judge": reward_identity(reward_model.type, {k: v for k, v in params.items() if k not in PIPELINE_PARAMS}),
                "judge_version": SCORING_VERSION}
    rubric = judge_rubric(params)
    if not rubric.is_simple:
        identity["rubric"] = dataclasses.asdict(rubric)
    protocol = judge_protocol(params)
    if protocol is not None:  # a benchmark's own scoring: its upstream files' digests and its rule's version
        identity["protocol"] = protocol.identity()
    return identity


def judge_protocol(params: dict):
    """The benchmark protocol ``reward_model.params`` names (``protocol: {name, dir}``), or None."""
    from ...protocols.registry import configured_protocol

    return configured_protocol(params)


def resolved_settings(reward_model, device: Any) -> dict:
    """What only ``device`` decides about the judge's answers (see the module's docstring)."""
    return judge_class(reward_model).resolved_settings(judge_params(reward_model, device), device)


def build_judge(reward_model, device: Any, *, output_dir: str | None = None, quiet: bool = False):
    """The judge of ``reward_model`` (a ``RewardModelConfig``) loaded on ``device``, and its rubric."""
    rubric = judge_rubric(reward_model.params)
    model = judge_class(reward_model).from_config(judge_params(reward_model, device, output_dir=output_dir,
                                                               quiet=quiet))
    return model, rubric


def judge_items(model, rubric, images: list, instructions: list[str], sources: list,
                item_ids: list[str] | None = None) -> list[dict]:
    """Score edited images (paths or PIL images) with ``rubric``: one dict of score fields per image.

    The score stage and the reward server both score through this. ``item_ids`` name the items in the
    judge's batch log lines.
    """
    from .rubrics import score_with_rubric

    if rubric.is_simple:
        results = model.batch_evaluate(images, instructions=instructions, item_ids=item_ids,
                                       original_images=sources if model.compare_with_original else None)
        return [{"score": r.score if r.error is None else None, "raw_output": r.raw_output, "error": r.error,
                 "fallback": r.fallback, "failed_stage": None if r.error is None else "score"} for r in results]
    results = score_with_rubric(model, rubric, images, instructions, sources, item_ids=item_ids)
    return [{"score": r.score, "raw_output": "\n\n".join(f"[{k}] {v}" for k, v in r.raw_outputs.items()),
             "error": r.error, "fallback": r.fallback, "failed_stage": None if r.error is None else "score",
             "sub_scores": r.sub_scores, "raw_outputs": r.raw_outputs} for r in results]


def judge_protocol_items(model, protocol, items: list, images: list, item_ids: list[str] | None = None) -> list[dict]:
    """Score edited images (paths or PIL images) of ``items`` with a benchmark's own protocol
    (``editjudge.protocols``): one dict of score fields per image, as ``judge_items`` gives."""
    from ...protocols.scoring import score_protocol_items

    return score_protocol_items(model, protocol, items, images, item_ids=item_ids)


def judge_shown(model, shown: list[tuple], system_prompt: str, user_prompts: list[str], parse,
                item_ids: list[str] | None = None) -> list:
    """Ask ``model`` about each entry of ``shown``: a tuple of images (paths or PIL images) shown in its
    order, the last one in the place of the edited image; one ``ScoreResult`` per entry, its score what
    ``parse`` (answer text -> float, raising ``ScoreParseError``) read. ``editjudge pairwise`` judges a
    source and two edits through this; the answer parser and the prompts are the caller's, the judge,
    its settings and its backend the configured ones."""
    return model.batch_evaluate([images[-1] for images in shown], system_prompts=system_prompt,
                                user_prompts=user_prompts, original_images=[tuple(images[:-1]) for images in shown],
                                item_ids=item_ids, parse=parse)


def judge_choices(model, shown: list[tuple], system_prompt: str, user_prompts: list[str], choices,
                  item_ids: list[str] | None = None) -> list:
    """Like ``judge_shown``, in logits mode: for each entry of ``shown`` the next-token probabilities of
    ``choices`` (a ``logits.Choices``: single-token texts after a prefilled assistant turn), renormalised
    over them, in each ``ScoreResult``'s ``probabilities``. Only a backend with ``reads_choices`` answers
    this (the transformers judge from its logits; the vLLM and API judges from ``top_logprobs``);
    ``editjudge pairwise`` asks for a preference probability through it."""
    if not getattr(model, "reads_choices", False):
        raise ValueError(f"{type(model).__name__} cannot read next-token probabilities of given choices")
    return model.batch_evaluate([images[-1] for images in shown], system_prompts=system_prompt,
                                user_prompts=user_prompts, original_images=[tuple(images[:-1]) for images in shown],
                                item_ids=item_ids, choices=choices)
