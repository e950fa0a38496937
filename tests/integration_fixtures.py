"""The trainers' side of each call, in our own words, read from their code (file and commit named).

A fake reward server for transport only: it records what it received and scores each item from its
pixels, so a test can tell whether scores came back in the order, and for the pairs, it sent.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


# ----------------------------------------------------------------------------- Flow-GRPO

def k_repeat_batches(n_items: int, batch_size: int, k: int, m: int, replicas: int, rank: int, seed: int = 0,
                     epoch: int = 0) -> list[list[int]]:
    """The dataset indices each batch of one rank holds in one epoch, as flow_grpo/sampler.py's
    DistributedKRepeatSampler (yifan123/flow_grpo @ 74db69191de9a0a54869c9c3341ce4b54db7005f) lays them
    out: per epoch, ``lcm(k * m, replicas * batch_size)`` samples; a generator seeded ``seed + epoch``
    (the same on every rank) picks the prompts (``randperm`` of the dataset, first ``per_epoch // k``),
    repeats each k times in a row, permutes the whole list with the same generator, and rank r takes
    ``batch_size`` items at ``i * replicas * batch_size + r * batch_size`` for batch i."""
    import torch

    per_iteration = replicas * batch_size
    per_epoch = math.lcm(k * m, per_iteration)
    unique = per_epoch // k
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    chosen = torch.randperm(n_items, generator=generator)[:unique].tolist()
    repeated = [index for index in chosen for _ in range(k)]
    order = torch.randperm(len(repeated), generator=generator).tolist()
    shuffled = [repeated[i] for i in order]
    return [shuffled[i * per_iteration + rank * batch_size:i * per_iteration + (rank + 1) * batch_size]
            for i in range(per_epoch // per_iteration)]


def per_prompt_advantages(prompts: list[str], rewards: np.ndarray, global_std: bool = False) -> np.ndarray:
    """flow_grpo/stat_tracking.py's PerPromptStatTracker.update for 'grpo' (yifan123/flow_grpo @
    ac4c86e8cae021841f1fde853d340e0db67690dd), on a fresh tracker: for each prompt, its rewards minus
    their mean, over their population std (or, with global_std, the std of all the rewards) plus 1e-4."""
    prompts_array, rewards = np.array(prompts), np.asarray(rewards, dtype=np.float64)
    advantages = np.zeros_like(rewards)
    for prompt in np.unique(prompts_array):
        group = rewards[prompts_array == prompt]
        std = (np.std(rewards, axis=0, keepdims=True) if global_std else np.std(group, axis=0, keepdims=True)) + 1e-4
        advantages[prompts_array == prompt] = (group - np.mean(group, axis=0, keepdims=True)) / std
    return advantages


def build_reward_table(table: dict, score_dict: dict, device="cuda:0") -> dict:
    """flow_grpo/rewards.py multi_score (yifan123/flow_grpo @ 94e23ee5405ab7241fc1f75d30cac8147e2b1f53):
    each named factory is called with the device when its code has a ``device`` variable, else bare."""
    return {name: table[name](device) if "device" in table[name].__code__.co_varnames else table[name]()
            for name in score_dict}


def flow_grpo_epoch(reward_fn, rank_batches: list[list[tuple]], num_train_timesteps: int = 2,
                    global_std: bool = False, per_prompt: bool = True):
    """One sampling epoch of scripts/train_flux_kontext.py (yifan123/flow_grpo @ 74db691), for rewards
    only. ``rank_batches[r]`` is rank r's batches, each ``(images, prompts, metadata, ref_images)``.
    Each batch: ``reward_fn(images, prompts, metadata, ref_images, only_strict=True)`` gives
    ``(rewards, _)``; every value becomes a float tensor; a rank's batches are concatenated; ``avg`` is
    kept as ``ori_avg`` and repeated over the train timesteps; ranks are gathered (rank order); the
    advantages come per prompt (or (r - mean) / (std + 1e-4) over everything), then each rank keeps
    its own rows (``reshape(num_processes, -1, T)[rank]``). Returns (gathered rewards, per-rank advantages)."""
    import torch

    per_rank, prompts_per_rank = [], []
    for batches in rank_batches:
        collected = []
        for images, prompts, metadata, ref_images in batches:
            rewards, _ = reward_fn(images, prompts, metadata, ref_images, only_strict=True)
            collected.append({key: torch.as_tensor(value).float() for key, value in rewards.items()})
            prompts_per_rank.append(list(prompts))
        merged = {key: torch.cat([c[key] for c in collected]) for key in collected[0]}
        merged["ori_avg"] = merged["avg"]
        merged["avg"] = merged["avg"].unsqueeze(1).repeat(1, num_train_timesteps)
        per_rank.append(merged)
    gathered = {key: torch.cat([r[key] for r in per_rank]).numpy() for key in per_rank[0]}
    prompts = [p for batch in prompts_per_rank for p in batch]
    if per_prompt:
        advantages = per_prompt_advantages(prompts, gathered["avg"], global_std=global_std)
    else:
        advantages = (gathered["avg"] - gathered["avg"].mean()) / (gathered["avg"].std() + 1e-4)
    advantages = torch.as_tensor(advantages)
    ranks = len(rank_batches)
    return gathered, [advantages.reshape(ranks, -1, advantages.shape[-1])[r].numpy() for r in range(ranks)]


# ----------------------------------------------------------------------------- fake server

def pixel_score(edited: np.ndarray, source: np.ndarray | None) -> float:
    """The fake judge: a number from both images' pixels (so a swapped source changes it)."""
    value = float(edited.mean()) / 255 * 6
    if source is not None:
        value += float(source.mean()) / 255 * 4
    return round(value, 6)


class FakeRewardServer:
    """``POST /v1/score`` on 127.0.0.1: records each request's decoded items, scores them with
    ``pixel_score``; ``fail_ids`` answers those ids with an error."""

    def __init__(self, token: str | None = None):
        self.requests: list[dict] = []
        self.items: list[dict] = []
        self.fail_ids: set = set()
        self.token = token
        self.ready = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = json.dumps({"status": "ok"}).encode()
                self.send_response(200 if server.ready else 503)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                if server.token and self.headers.get("Authorization") != f"Bearer {server.token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                results = []
                for index, item in enumerate(body["items"]):
                    edited_bytes = base64.b64decode(item["edited"])
                    source_bytes = base64.b64decode(item["source"]) if "source" in item else None
                    edited = np.asarray(Image.open(io.BytesIO(edited_bytes)).convert("RGB"))
                    source = (np.asarray(Image.open(io.BytesIO(source_bytes)).convert("RGB"))
                              if source_bytes is not None else None)
                    server.items.append({"edited": edited, "source": source, "source_bytes": source_bytes,
                                         "instruction": item["instruction"], "rubric": body.get("rubric")})
                    failed = item.get("id", index) in server.fail_ids or item["instruction"] in server.fail_ids
                    score = None if failed else pixel_score(edited, source)
                    sub, raw = ({} if failed else {"SC": 1.0}), "fake"
                    if body.get("rubric") == "editscore" and not failed:  # a rubric's answer line, as judge_items
                        sub = {"PF": score, "C": 10.0, "SC": score, "PQ": 4.0, "overall": math.sqrt(score * 4.0)}
                        raw = ('[semantics] {"reasoning": "the \\"sky\\" is red", "score": [20, 25]}\n\n'
                               '[quality] {"reasoning": "clean", "score": [10, 12]}')
                    results.append({"id": item.get("id"), "score": score, "sub_scores": sub, "raw_output": raw,
                                    "error": "judge error: fake" if failed else None})
                data = json.dumps({"version": 1, "results": results}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# ----------------------------------------------------------------------------- verl-omni

async def verl_omni_run_single(compute_score, solution_image, row: dict) -> dict:
    """verl_omni/reward_loop/reward_manager/visual.py VisualRewardManager.run_single (verl-project/verl-omni
    @ a1139bafffb5b9711f0a6b6edff8ecaa60bfff30), with a row shaped as its qwen_image_edit prepare_data.py
    writes it: extra_info gains num_turns and rollout_reward_scores; a coroutine function is awaited with
    keyword arguments only (a plain function would go to an executor); a dict answer's ``score`` is the
    reward and its other keys the extra info."""
    import inspect

    extra_info = dict(row.get("extra_info", {}))
    extra_info["num_turns"] = None
    extra_info["rollout_reward_scores"] = {}
    assert inspect.iscoroutinefunction(compute_score), "the manager would run it in an executor"
    result = await compute_score(data_source=row["data_source"], solution_image=solution_image,
                                 ground_truth=row["reward_model"]["ground_truth"], extra_info=extra_info)
    if isinstance(result, dict):
        return {"reward_score": result["score"], "reward_extra_info": {k: v for k, v in result.items() if k != "score"}}
    return {"reward_score": result, "reward_extra_info": {"acc": result}}


def verl_omni_edit_row(instruction: str, image_name: str) -> dict:
    """One row of examples/flowgrpo_trainer/qwen_image_edit/prepare_data.py (same commit), the fields
    the reward sees: the instruction as ground truth and in extra_info, the source's file name."""
    return {"data_source": "image_edit", "reward_model": {"style": "model", "ground_truth": instruction},
            "extra_info": {"split": "train", "index": 0, "instruction": instruction, "image": image_name}}


# ----------------------------------------------------------------------------- UniRL

def unirl_score(base_url: str, pairs: list, prompts: list[str], required=("editjudge",)) -> dict:
    """unirl/reward/remote.py RemoteRewardBackend (Tencent-Hunyuan/UniRL @
    1a7b501e8fe8517b432a130220d2ff462f9b5afa) for an edit batch, with image_format PNG: GET /health must
    list every required reward under "rewards"; each sample is a two-turn history (condition image,
    then generated image, both with the prompt as text); the answer's results[i][reward] is reduced to
    its first sub-metric, a non-finite one or a missing reward fails the sample (its error from
    errors[i][reward], or "missing ... without error"). Returns rewards, successes and errors."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/health", timeout=30) as response:
        roster = json.loads(response.read())["rewards"]
    missing = [name for name in required if name not in roster]
    if missing:
        raise ValueError(f"required_rewards={missing} not served")

    def b64(image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    body = {"requests": [{"history": [{"text": prompt, "image_b64": b64(source)},
                                      {"text": prompt, "image_b64": b64(out)}],
                          "required_rewards": list(required), "metadata": None}
                         for (source, out), prompt in zip(pairs, prompts)]}
    request = urllib.request.Request(f"{base_url}/score", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = json.loads(response.read())
    rewards, successes, errors = [], [], []
    for i in range(len(pairs)):
        result, sample_errors = raw["results"][i], raw["errors"][i]
        scores, problems = [], []
        for name in required:
            if name in result:
                values = list(result[name].values())
                if any(v is None or not math.isfinite(v) for v in values):
                    problems.append(f"{name}: non-finite")
                    continue
                scores.append(float(values[0]) if values else 0.0)
            else:
                problems.append(f"{name}: {sample_errors.get(name, 'missing from server response without error')}")
        rewards.append(sum(scores) if scores else 0.0)
        successes.append(bool(scores) and not problems)
        errors.append("; ".join(problems) or None)
    return {"rewards": rewards, "successes": successes, "errors": errors}
