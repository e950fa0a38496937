"""Build the tiny local models that the tests and the demo use, offline and deterministically.

    python -m editjudge.tools.make_tiny_models --out .cache/tiny-models

Writes ``OUT/v<BUILDER_VERSION>/qwen3-vl-judge``: a ~200k-parameter Qwen3-VL checkpoint
(config, safetensors weights, a locally trained Qwen2 BPE tokenizer with Qwen's special
tokens, the Qwen2-VL image processor, the Qwen3-VL video processor and a Qwen3-VL-shaped chat
template). It is a *real tiny judge*: trained for a few hundred CPU steps on synthetic images
so that it answers ``{"score": N}`` with N the image's brightness on a 0-10 scale
(``brightness_score`` below), and answers the built-in rubric prompts (viescore) with every field
set to that brightness, e.g. ``{"naturalness": 6, "artifacts": 6}``. Nothing is downloaded.

Trained weights depend on the CPU that trains them, so the tests and the demo do not train it: they
use the pinned build checked in under ``src/tools/pinned/`` (``ensure_tiny_models`` installs it, SHA-256
verified; see ``pinned``). A change to this file that changes the models must bump BUILDER_VERSION
and re-pin them (``make models-rebuild``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..models.reward.prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT, fill_prompt
from ..models.reward.rubrics import BUILTIN as RUBRICS

logger = logging.getLogger(__name__)


BUILDER_VERSION = "3"
JUDGE_DIRNAME = "qwen3-vl-judge"

# Qwen's special tokens, in Qwen's order (their ids follow the learned BPE vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Shaped like Qwen3-VL's template: optional system turn, images/videos inline in user turns
# as <|vision_start|><|image_pad|><|vision_end|>, and the assistant generation prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}"
    "{{- message['content'] }}"
    "{%- else %}"
    "{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'video' or 'video' in item %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in item %}"
    "{{- item['text'] }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# The judge sees images resized into this pixel range (patch 16, merge 2: 32-pixel units).
MIN_PIXELS = 32 * 32
MAX_PIXELS = 128 * 128

TRAIN_SYSTEM_PROMPTS = [
    DEFAULT_SYSTEM_PROMPT,
    "You are a strict judge of image editing quality.",
    "You are an expert evaluator of edited images. Answer only with JSON.",
    "You rate images.",
    "",
]
TRAIN_USER_TEMPLATES = [
    DEFAULT_USER_PROMPT.replace("{", "{{").replace("}", "}}").replace("{{instruction}}", "{instruction}"),
    'Rate how well this image follows the instruction "{instruction}". Reply as {{"score": N}} with N from 0 to 10.',
    "Instruction: {instruction}\nScore the edited image from 0 to 10.",
    'Evaluate the edit "{instruction}". Output JSON like {{"score": 7}}.',
    "How good is this image? Give a score from 0 to 10.",
    "{instruction}",
]
TRAIN_INSTRUCTIONS = [
    "make the sky blue", "add a red hat to the person", "remove the cup from the table",
    "turn the photo into a watercolor painting", "change the text on the sign to OPEN",
    "make it look like winter", "replace the cat with a dog", "make the car green",
    "add sunglasses", "show what happens after the ice melts", "make the rocket launch",
    "change the background to a beach", "convert to black and white", "add a rainbow",
    "把天空变成蓝色", "remove the person on the left", "make the coffee look cold",
    "change the material of the chair to wood", "add snow on the ground", "make it night",
]


# Rubric prompts the judge also learns (the built-in viescore ones): it answers every field of the
# prompt with the brightness of the last image, in the JSON form the prompt asks for.
TRAIN_RUBRIC_PROMPTS = [p for name, r in RUBRICS.items() if name != "simple" for p in r["prompts"]]
RUBRIC_SHARE = 0.35
LONG_EVERY, LONG_BATCH = 10, 4


def _rubric_answer(fields: list[str], value: int) -> str:
    return "{" + ", ".join(f'"{field}": {value}' for field in fields) + "}"


def brightness_score(image: Image.Image) -> int:
    """The property the tiny judge learns: mean luminance mapped to 0-10, rounded."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return int(round(gray.mean() / 25.5))


def _corpus() -> list[str]:
    lines = list(TRAIN_SYSTEM_PROMPTS) + list(TRAIN_INSTRUCTIONS)
    lines += [t.replace("{instruction}", i) for t in TRAIN_USER_TEMPLATES for i in TRAIN_INSTRUCTIONS[:5]]
    lines += ['{"score": %d}' % n for n in range(11)]
    for prompt in TRAIN_RUBRIC_PROMPTS:
        lines += [prompt["system_prompt"], fill_prompt(prompt["user_prompt"], TRAIN_INSTRUCTIONS[0])]
        lines += [_rubric_answer(prompt["fields"], n) for n in range(11)]
    lines += ["system", "user", "assistant", "Score: 7", "7/10", "8 out of 10", "The final score is 6."]
    lines += ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?\"'(){}[]<>/\\-_=+*&%$#@"]
    return lines


def build_tokenizer(vocab_size: int = 2000):
    """A byte-level BPE trained on a fixed corpus with Qwen2's pre-tokenizer, as a Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus() * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=SPECIAL_TOKENS,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    image_processor = Qwen2VLImageProcessor(
        size=size, patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS * 4},
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    return Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer,
        video_processor=video_processor, chat_template=CHAT_TEMPLATE,
    )


def judge_config(tokenizer, *, hidden: int = 64, layers: int = 2, vision_hidden: int = 32):
    from transformers import Qwen3VLConfig

    ids = tokenizer.convert_tokens_to_ids
    head_dim = 32  # vLLM's CPU attention kernels need head_dim >= 32
    return Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": layers,
            "num_attention_heads": hidden // head_dim,
            "num_key_value_heads": max(1, hidden // head_dim // 2),
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default", "rope_theta": 10000.0,
                "mrope_section": [4, 6, 6], "mrope_interleaved": True,
            },
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            "num_heads": 2,
            "patch_size": 16,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "out_hidden_size": hidden,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def synthetic_image(rng: random.Random, level: int | None = None) -> Image.Image:
    """A textured image of random size, tint and brightness level (0-10)."""
    if level is None:
        level = rng.randint(0, 10)
    w, h = rng.randint(24, 160), rng.randint(24, 160)
    nprng = np.random.default_rng(rng.getrandbits(32))
    base = level * 25.5 + nprng.uniform(-8, 8)
    tint = nprng.uniform(-30, 30, size=3)
    tint -= tint @ np.array([0.299, 0.587, 0.114])  # keep luminance where the level puts it
    texture = nprng.normal(0, rng.choice([0, 6, 14]), size=(h, w, 1))
    pixels = np.clip(base + tint[None, None, :] + texture, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _filler(rng: random.Random) -> str:
    words = " ".join(TRAIN_INSTRUCTIONS + TRAIN_SYSTEM_PROMPTS).split()
    return " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))


def _long_instruction(rng: random.Random) -> str:
    """An instruction of 300-2000 characters (benchmarks cut theirs at 2000): one repeated, or filler."""
    n = rng.randint(300, 2000)
    if rng.random() < 0.5:
        return ((rng.choice(TRAIN_INSTRUCTIONS) + " ") * n)[:n].strip()
    words = " ".join(TRAIN_INSTRUCTIONS).split()
    return " ".join(rng.choice(words) for _ in range(n // 4))[:n].strip()


def _training_example(rng: random.Random, long: bool = False) -> tuple[list[dict], list[Image.Image], str]:
    """Prompts vary in wording and length so that the judge learns to read the image, not the text.

    ``long``: the instruction is 300-2000 characters, so that a long instruction does not throw the
    judge off (it did, depending on the machine's float rounding, before these were trained on).
    """
    if long:
        images = [synthetic_image(rng) for _ in range(rng.choice([1, 2]))]
        user = rng.choice(TRAIN_USER_TEMPLATES).format(instruction=_long_instruction(rng))
        content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": user}]
        messages = [{"role": "system", "content": rng.choice(TRAIN_SYSTEM_PROMPTS)}, {"role": "user", "content": content}]
        return messages, images, '{"score": %d}' % brightness_score(images[-1])
    if rng.random() < RUBRIC_SHARE:
        prompt = rng.choice(TRAIN_RUBRIC_PROMPTS)
        images = [synthetic_image(rng) for _ in range(2 if prompt.get("with_source") else 1)]
        content = [{"type": "image", "image": im} for im in images]
        content.append({"type": "text", "text": fill_prompt(prompt["user_prompt"], rng.choice(TRAIN_INSTRUCTIONS))})
        messages = [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": content}]
        return messages, images, _rubric_answer(prompt["fields"], brightness_score(images[-1]))
    images = [synthetic_image(rng) for _ in range(rng.choice([1, 1, 2]))]
    user = rng.choice(TRAIN_USER_TEMPLATES).format(instruction=rng.choice(TRAIN_INSTRUCTIONS))
    if rng.random() < 0.3:
        user = f"{_filler(rng)} {user} {_filler(rng)}".strip()
    system = rng.choice(TRAIN_SYSTEM_PROMPTS)
    if rng.random() < 0.2:
        system = f"{system} {_filler(rng)}".strip()
    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": user}]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    # The judge scores the last image (the edited one when a source image comes first).
    answer = '{"score": %d}' % brightness_score(images[-1])
    return messages, images, answer


def _encode_pool(processor, n: int, rng: random.Random, long: bool = False) -> list[dict]:
    import torch

    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pool = []
    for _ in range(n):
        messages, images, answer = _training_example(rng, long=long)
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = processor(text=[prompt], images=images, return_tensors="pt")
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end]
        ids = torch.cat([enc["input_ids"][0], torch.tensor(answer_ids)])
        labels = torch.full_like(ids, -100)
        labels[-len(answer_ids):] = torch.tensor(answer_ids)
        mm = torch.cat([enc["mm_token_type_ids"][0], torch.zeros(len(answer_ids), dtype=torch.long)])
        pool.append({
            "input_ids": ids, "labels": labels, "mm_token_type_ids": mm,
            "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"],
        })
    return pool


def _collate(examples: list[dict], pad_id: int) -> dict:
    import torch

    length = max(len(e["input_ids"]) for e in examples)

    def pad(key, value):
        return torch.stack([torch.nn.functional.pad(e[key], (0, length - len(e[key])), value=value) for e in examples])

    ids = pad("input_ids", pad_id)
    return {
        "input_ids": ids,
        "attention_mask": pad("input_ids", -1).ne(-1).long(),
        "labels": pad("labels", -100),
        "mm_token_type_ids": pad("mm_token_type_ids", 0),
        "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
    }


def train_judge(model, processor, *, steps: int, batch_size: int, seed: int, lr: float = 6e-3) -> list[float]:
    import torch

    rng = random.Random(seed)
    pool = _encode_pool(processor, 1024, rng)
    # Long prompts train in batches of their own (every LONG_EVERY-th step), so that they do not pad
    # every batch to their length: ~15% more training time.
    long_pool = _encode_pool(processor, 64, rng, long=True)
    pad_id = processor.tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for step in range(steps):
        if step % LONG_EVERY == LONG_EVERY - 1:
            batch = _collate(rng.sample(long_pool, LONG_BATCH), pad_id)
        else:
            batch = _collate(rng.sample(pool, batch_size), pad_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            logger.info("judge training step %d/%d loss %.4f", step + 1, steps, loss.item())
    model.eval()
    return losses


def build_judge(out_dir: Path, *, seed: int = 0, steps: int = 450, batch_size: int = 16) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = judge_config(tokenizer)
    model = Qwen3VLForConditionalGeneration(config)
    with torch.no_grad():
        # The vision blocks' LayerNorms are blind to a patch's overall scale, which is exactly the
        # brightness the judge must read; a large fixed offset in the patch embedding keeps it visible.
        model.model.visual.patch_embed.proj.bias.normal_(0.0, 1.0)
    started = time.perf_counter()
    losses = train_judge(model, processor, steps=steps, batch_size=batch_size, seed=seed)
    ids = tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return write_build_info(out_dir, "tiny judge", losses, started, {
        "builder_version": BUILDER_VERSION, "seed": seed, "steps": steps, "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "property": "brightness_score: round(mean luminance / 25.5) of the last image",
    })


def write_build_info(out_dir: Path, what: str, losses: list[float], started: float, info: dict) -> Path:
    """``out_dir/editjudge_tiny.json``: ``info`` plus the final loss (mean of the last 20 steps) and the
    training time since ``started``; the folder counts as built once this file exists. Returns ``out_dir``."""
    info = {**info, "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "train_seconds": round(time.perf_counter() - started, 1)}
    (out_dir / "editjudge_tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("%s written to %s (%s)", what, out_dir, info)
    return out_dir


def judge_path() -> str:
    """The judge's folder below a cache folder: ``v<BUILDER_VERSION>/qwen3-vl-judge``."""
    return f"v{BUILDER_VERSION}/{JUDGE_DIRNAME}"


def ensure_tiny_models(root: str | os.PathLike) -> dict[str, Path]:
    """The tiny judge under ``root/v<BUILDER_VERSION>``: the pinned, SHA-256-verified files (see ``pinned``)."""
    from .pinned import tiny_model

    return {"judge": tiny_model(JUDGE_DIRNAME, root)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="cache folder; models land in OUT/v<version>/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = ensure_tiny_models(args.out)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
