"""The judge's engines side by side: transformers in-process (hf) and a vLLM server (vllm).

    python bench/reward_throughput.py --backends hf,vllm                  # CPU, the small random judge
    python bench/reward_throughput.py --backends hf,vllm --preset qwen3-vl-8b --device cuda

Both score the same images with the same random Qwen3-VL (built by reward_throughput's
``build_random_model``: no end-of-sequence token, and ``ignore_eos`` on vLLM, so each image
generates exactly --new-tokens tokens either way) and the same ``max_pixels``. vLLM is reached
through its OpenAI-compatible server (started and stopped by ``VLLMRewardModel``, response cache
off), with ``--max-concurrent`` requests in flight; hf runs ``batch_score`` at batch 8. Repeats are
interleaved; each backend's figure is its best repeat. Prints images/s and each backend's ratio to
the others, and writes OUT/backends.json.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path


def compare_backends(args, backends: list[str], build_random_model, make_images) -> int:
    import torch

    from editjudge.models.reward import Qwen3VLRewardModel
    from editjudge.models.reward.vllm_judge import VLLMRewardModel

    unknown = sorted(set(backends) - {"hf", "vllm"})
    if unknown:
        raise SystemExit(f"--backends: unknown {unknown}; known: hf, vllm")
    dtype_name = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    images = make_images(args.images, args.image_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_random_model(Path(tmp) / "model", args.preset, args.device, getattr(torch, dtype_name))
        common = dict(max_new_tokens=args.new_tokens, max_pixels=max(args.image_size ** 2, 1024))
        judges = {}
        if "hf" in backends:
            judges["hf"] = Qwen3VLRewardModel(str(path), device=args.device, dtype=dtype_name, batch_size=8,
                                              stop_early=False, show_progress=False, **common)
        if "vllm" in backends:
            judges["vllm"] = VLLMRewardModel(str(path), device=args.device, dtype=dtype_name, cache_dir=False,
                                             output_dir=str(Path(tmp) / "vllm"), max_concurrent=args.max_concurrent,
                                             extra_body={"ignore_eos": True}, max_model_len=4096, **common)
        try:
            for judge in judges.values():  # warm-up: first calls compile and allocate
                judge.batch_evaluate(images[:2])
            seconds = {name: [] for name in judges}
            for _ in range(args.repeats):
                for name, judge in judges.items():
                    started = time.perf_counter()
                    results = judge.batch_evaluate(images)
                    seconds[name].append(time.perf_counter() - started)
                    assert len(results) == len(images)
        finally:
            for judge in judges.values():
                getattr(judge, "close", lambda: None)()
    rate = {name: len(images) / min(values) for name, values in seconds.items()}
    print(f"\n{len(images)} images of {args.image_size}x{args.image_size}, {args.new_tokens} generated tokens each, "
          f"preset {args.preset} on {args.device} ({dtype_name}), best of {args.repeats} interleaved repeats")
    print(f"{'backend':<8} {'images/s':>9}  " + "  ".join(f"{'x ' + other:>8}" for other in rate))
    for name, value in rate.items():
        print(f"{name:<8} {value:>9.2f}  " + "  ".join(f"{value / rate[other]:>8.2f}" for other in rate))
    report = {"args": vars(args), "images_per_s": rate, "seconds": seconds,
              "ratios": {a: {b: rate[a] / rate[b] for b in rate} for a in rate}}
    (out / "backends.json").write_text(json.dumps(report, indent=2))
    logging.info("wrote %s", out / "backends.json")
    return 0
