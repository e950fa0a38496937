"""Build a tiny Qwen2.5-VL judge (the architecture of EditScore's and GEdit's judges), offline.

    python -m editjudge.tools.make_tiny_qwen25 --out .cache/tiny-models \
        [--lora-base .cache/tiny-models/v3/qwen3-vl-judge]

Writes ``OUT/qwen25-v<BUILDER_VERSION>/qwen2.5-vl-judge``: a ~250k-parameter Qwen2.5-VL checkpoint
(``Qwen2_5_VLForConditionalGeneration``: windowed vision attention, RMSNorm vision blocks, patch
14) with the tokenizer of the tiny Qwen3-VL judge (``make_tiny_models.build_tokenizer``), the
Qwen2-VL image and video processors in a ``Qwen2_5_VLProcessor`` and the same chat template. Like
the Qwen3-VL judge it is trained briefly on synthetic images to answer ``{"score": N}`` with N the
image's brightness (``make_tiny_models.brightness_score``), so that a score read through
``Qwen3VLRewardModel`` (which loads any checkpoint through ``AutoModelForImageTextToText``) is a
real answer of a real Qwen2.5-VL forward pass. Only the plain score prompts are trained (no rubric
prompts, no long instructions). Nothing is downloaded.

With ``--lora-base`` (or ``ensure_tiny_lora``) it also writes a tiny PEFT LoRA adapter for the tiny
Qwen3-VL judge, trained to answer the inverted brightness (10 - N): the LoRA judge of the tests.

The tests and the demo do not train it: they use the pinned build checked in under
``src/tools/pinned/`` (``ensure_tiny_qwen25`` and ``ensure_tiny_lora`` install it, SHA-256 verified; see
``pinned``). A change to this file that changes the models must bump BUILDER_VERSION and re-pin them
(``make models-rebuild``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from pathlib import Path

from .make_tiny_models import (
    CHAT_TEMPLATE,
    TRAIN_INSTRUCTIONS,
    TRAIN_SYSTEM_PROMPTS,
    TRAIN_USER_TEMPLATES,
    brightness_score,
    build_tokenizer,
    synthetic_image,
    write_build_info,
)

logger = logging.getLogger(__name__)

# 2: 900 training steps (the seed-0 build of 600 steps read brightness poorly in logits mode: Spearman 0.76).
BUILDER_VERSION = "2"
JUDGE_DIRNAME = "qwen2.5-vl-judge"

# Qwen2.5-VL's patch 14 and merge 2: images resize in 28-pixel units within this range.
MIN_PIXELS = 28 * 28
MAX_PIXELS = 112 * 112


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    common = dict(patch_size=14, temporal_patch_size=2, merge_size=2,
                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, **common)
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS * 4}, **common)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def judge_config(tokenizer, *, hidden: int = 64, layers: int = 2, vision_hidden: int = 32):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    head_dim = 32  # as the Qwen3-VL judge: vLLM's CPU attention kernels need head_dim >= 32
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": layers,
            "num_attention_heads": hidden // head_dim,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            "pad_token_id": ids("<|endoftext|>"),
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            "num_heads": 2,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "window_size": 56,  # 2x2 merged patches per window, so that windowing really happens
            "fullatt_block_indexes": [1],
            "out_hidden_size": hidden,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        tie_word_embeddings=True,
    )


def _example(rng: random.Random, score=lambda level: level):
    images = [synthetic_image(rng) for _ in range(rng.choice([1, 1, 2]))]
    user = rng.choice(TRAIN_USER_TEMPLATES).format(instruction=rng.choice(TRAIN_INSTRUCTIONS))
    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": user}]
    messages = [{"role": "system", "content": rng.choice(TRAIN_SYSTEM_PROMPTS)}, {"role": "user", "content": content}]
    return messages, images, '{"score": %d}' % score(brightness_score(images[-1]))


def _encode(processor, rng: random.Random, n: int, score=lambda level: level) -> list[dict]:
    import torch

    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pool = []
    for _ in range(n):
        messages, images, answer = _example(rng, score)
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = processor(text=[prompt], images=images, return_tensors="pt")
        answer_ids = torch.tensor(tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end])
        example = {"input_ids": torch.cat([enc["input_ids"][0], answer_ids]),
                   "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
        example["labels"] = torch.full_like(example["input_ids"], -100)
        example["labels"][-len(answer_ids):] = answer_ids
        # Per-token extras the processor may add (mm_token_type_ids in recent transformers): 0 on the answer.
        for key, value in enc.items():
            if key not in example and key != "attention_mask" and value.dim() == 2:
                example[key] = torch.cat([value[0], torch.zeros(len(answer_ids), dtype=value.dtype)])
        pool.append(example)
    return pool


def _collate(examples: list[dict], pad_id: int) -> dict:
    import torch

    length = max(len(e["input_ids"]) for e in examples)

    def pad(key, value):
        return torch.stack([torch.nn.functional.pad(e[key], (0, length - len(e[key])), value=value) for e in examples])

    batch = {"input_ids": pad("input_ids", pad_id), "labels": pad("labels", -100),
             "attention_mask": torch.stack([torch.arange(length) < len(e["input_ids"]) for e in examples]).long(),
             "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
             "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples])}
    for key in examples[0]:
        if key not in batch:
            batch[key] = pad(key, 0)
    return batch


def _train(model, processor, pool: list[dict], rng: random.Random, *, steps: int, batch_size: int, lr: float,
           what: str) -> list[float]:
    import torch

    pad_id = processor.tokenizer.pad_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for step in range(steps):
        loss = model(**_collate(rng.sample(pool, batch_size), pad_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            logger.info("%s training step %d/%d loss %.4f", what, step + 1, steps, loss.item())
    model.eval()
    return losses


def build_judge(out_dir: Path, *, seed: int = 0, steps: int = 900, batch_size: int = 16, lr: float = 6e-3) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    model = Qwen2_5_VLForConditionalGeneration(judge_config(tokenizer))
    with torch.no_grad():
        # RMSNorm is blind to a patch's overall scale (the brightness to read) and Qwen2.5-VL's patch
        # embedding has no bias; a large fixed bias in the first vision MLP keeps the scale visible.
        model.model.visual.blocks[0].mlp.down_proj.bias.normal_(0.0, 1.0)
    started = time.perf_counter()
    losses = _train(model, processor, _encode(processor, rng, 768), rng, steps=steps, batch_size=batch_size,
                    lr=lr, what="qwen2.5-vl judge")
    ids = tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")], pad_token_id=ids("<|endoftext|>"), do_sample=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return write_build_info(out_dir, "tiny Qwen2.5-VL judge", losses, started, {
        "builder_version": BUILDER_VERSION, "architecture": "Qwen2_5_VLForConditionalGeneration",
        "seed": seed, "steps": steps, "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "property": "brightness_score: round(mean luminance / 25.5) of the last image",
    })


# The tiny LoRA adapter: on the tiny Qwen3-VL judge, trained to answer the *inverted* brightness
# (10 - level), so that a test can tell at once whether the adapter was applied.
LORA_DIRNAME = "qwen3-vl-judge-lora-inverted"
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def build_lora_adapter(base: Path, out_dir: Path, *, seed: int = 0, steps: int = 200, batch_size: int = 16,
                       lr: float = 1e-2, rank: int = 8) -> Path:
    """A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) for the judge at ``base``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(seed)
    rng = random.Random(seed)
    processor = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
    peft_model = get_peft_model(model, lora)
    # The adapter's files name the base by its folders below the cache, not by this machine's path.
    base_name = f"{base.parent.name}/{base.name}"
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    started = time.perf_counter()
    pool = _encode(processor, rng, 512, score=lambda level: 10 - level)
    losses = _train(peft_model, processor, pool, rng, steps=steps, batch_size=batch_size, lr=lr, what="lora adapter")
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's model card: empty, and it names this machine's paths
    return write_build_info(out_dir, "tiny LoRA adapter", losses, started, {
        "builder_version": BUILDER_VERSION, "base": base_name, "seed": seed, "steps": steps, "rank": rank,
        "trainable_parameters": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        "property": "answers 10 - brightness_score of the last image",
    })


def judge_path() -> str:
    """The Qwen2.5-VL judge's folder below a cache folder."""
    return f"qwen25-v{BUILDER_VERSION}/{JUDGE_DIRNAME}"


def lora_path(base_path: str) -> str:
    """The LoRA adapter's folder below a cache folder; its name carries the base judge's version folder."""
    return f"qwen25-v{BUILDER_VERSION}/{LORA_DIRNAME}-{Path(base_path).parent.name}"


def ensure_tiny_lora(root: str | os.PathLike, base: str | os.PathLike) -> Path:
    """The tiny LoRA adapter for the tiny Qwen3-VL judge ``base`` (which must be ``root``'s tiny judge):
    the pinned, SHA-256-verified files (see ``pinned``)."""
    from .make_tiny_models import ensure_tiny_models
    from .pinned import PinnedModelError, tiny_model

    judge = ensure_tiny_models(root)["judge"]
    if Path(base).resolve() != judge.resolve():
        raise PinnedModelError(f"the tiny LoRA adapter is trained for the tiny judge {judge}, not {base}")
    return tiny_model(LORA_DIRNAME, root)


def ensure_tiny_qwen25(root: str | os.PathLike) -> Path:
    """The tiny Qwen2.5-VL judge under ``root/qwen25-v<BUILDER_VERSION>``: the pinned, verified files."""
    from .pinned import tiny_model

    return tiny_model(JUDGE_DIRNAME, root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="cache folder; the model lands in OUT/qwen25-v<version>/")
    parser.add_argument("--lora-base", help="also the tiny LoRA adapter for this Qwen3-VL judge folder (needs peft)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"judge: {ensure_tiny_qwen25(args.out)}")
    if args.lora_base:
        print(f"lora adapter: {ensure_tiny_lora(args.out, args.lora_base)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
