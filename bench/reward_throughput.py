"""Reward-model throughput: sequential scoring against real batching, measured side by side.

    python bench/reward_throughput.py                       # CPU, a ~20M-parameter random Qwen3-VL
    python bench/reward_throughput.py --preset qwen3-vl-8b --device cuda   # 8B-shaped, bf16, on a GPU

Builds a random Qwen3-VL of the chosen shape (with the tiny judge's tokenizer and processor),
saves it and loads it back through ``Qwen3VLRewardModel`` (the real loading path), then scores
the same images sequentially, at several batch sizes, and in logits mode, in one run. The
random model's answers are not scores; generation length is fixed at --new-tokens by removing
the end-of-sequence token, so every configuration does the same work. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

PRESETS = {
    # hidden, layers, heads, kv heads, intermediate; vision hidden, depth, heads, intermediate
    "small": dict(hidden=512, layers=6, heads=8, kv=4, inter=1536, v_hidden=256, v_depth=4, v_heads=4, v_inter=768,
                  deepstack=[1]),
    "qwen3-vl-8b": dict(hidden=4096, layers=36, heads=32, kv=8, inter=12288, v_hidden=1152, v_depth=27, v_heads=16,
                        v_inter=4304, deepstack=[8, 16, 24]),
}


def build_random_model(out: Path, preset: str, device: str, dtype: torch.dtype) -> Path:
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from src.tools.make_tiny_models import build_processor, build_tokenizer

    p = PRESETS[preset]
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    head_dim = p["hidden"] // p["heads"] if preset == "small" else 128
    section = head_dim // 2
    temporal = section * 3 // 8  # Qwen3-VL-8B: head_dim 128 -> mrope_section [24, 20, 20]
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=p["hidden"], intermediate_size=p["inter"],
                         num_hidden_layers=p["layers"], num_attention_heads=p["heads"], num_key_value_heads=p["kv"],
                         head_dim=head_dim, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                          "mrope_section": [temporal, (section - temporal) // 2, (section - temporal) // 2],
                                          "mrope_interleaved": True},
                         pad_token_id=ids("<|endoftext|>")),
        vision_config=dict(depth=p["v_depth"], hidden_size=p["v_hidden"], intermediate_size=p["v_inter"],
                           num_heads=p["v_heads"], patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                           out_hidden_size=p["hidden"], num_position_embeddings=2304,
                           deepstack_visual_indexes=p["deepstack"]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration(config).to(dtype)
    # No end-of-sequence token: every configuration generates exactly --new-tokens tokens.
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=ids("<|endoftext|>"), do_sample=False)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    n = sum(t.numel() for t in model.parameters())
    del model
    logging.info("random %s model: %.1fM parameters", preset, n / 1e6)
    return out


def make_images(n: int, size: int, mixed: bool, seed: int = 0) -> list[Image.Image]:
    rng = random.Random(seed)
    images = []
    for _ in range(n):
        w = h = size
        if mixed:
            w, h = rng.choice([size // 2, size, size * 2]), rng.choice([size // 2, size, size * 2])
        images.append(Image.effect_noise((w, h), rng.randint(20, 80)).convert("RGB"))
    return images


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--mixed-sizes", action="store_true", help="images of several sizes, in input order")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("src.models.reward.qwen3_vl").setLevel(logging.WARNING)

    from src.models.reward import Qwen3VLRewardModel

    dtype_name = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    images = make_images(args.images, args.image_size, args.mixed_sizes)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_random_model(Path(tmp) / "model", args.preset, args.device, getattr(torch, dtype_name))
        common = dict(device=args.device, dtype=dtype_name, max_new_tokens=args.new_tokens, show_progress=False,
                      max_pixels=max(args.image_size, 64) ** 2 * 4)
        judge = Qwen3VLRewardModel(str(path), **common)
        logits_judge = Qwen3VLRewardModel(str(path), score_mode="logits", **common)
        judge.batch_score(images[:2], batch_size=2)  # warm-up
        rows = []

        def measure(name, fn):
            times = timed(fn, args.repeats)
            best = min(times)
            rows.append({"config": name, "seconds": best, "images_per_s": len(images) / best,
                         "spread": (max(times) - best) / best})

        measure("sequential", lambda: judge.batch_score(images, use_batch_inference=False))
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            measure(f"batch {bs}", lambda bs=bs: judge.batch_score(images, batch_size=bs))
        measure("logits, batch 8", lambda: logits_judge.batch_score(images, batch_size=8))

    base = rows[0]["images_per_s"]
    print(f"\n{args.preset} Qwen3-VL, {args.device} {dtype_name}, {len(images)} images of "
          f"{'mixed sizes' if args.mixed_sizes else f'{args.image_size}x{args.image_size}'}, "
          f"{args.new_tokens} new tokens, best of {args.repeats}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'configuration':<18} {'seconds':>8} {'images/s':>9} {'speed-up':>9}")
    for row in rows:
        row["speedup"] = row["images_per_s"] / base
        print(f"{row['config']:<18} {row['seconds']:>8.3f} {row['images_per_s']:>9.2f} {row['speedup']:>8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"median speed-up over sequential: {statistics.median(r['speedup'] for r in rows[1:]):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
