"""Build tiny random-weight diffusers edit pipelines for the tests and the demo, offline and deterministically.

    python -m editjudge.tools.make_tiny_editors --out .cache/tiny-models

Writes ``OUT/v<EDITOR_BUILDERS_VERSION>/<name>``, one ``DiffusionPipeline.save_pretrained`` folder
per editor (loadable with ``DiffusionPipeline.from_pretrained(folder)``):

- ``instruct-pix2pix``: StableDiffusionInstructPix2PixPipeline (8-channel UNet, 4-level VAE: /8).
- ``flux-kontext``: FluxKontextPipeline (guidance-distilled Flux transformer, 16 latent channels, /8 VAE).
- ``qwen-image-edit`` and ``qwen-image-edit-plus``: QwenImageEditPipeline and QwenImageEditPlusPipeline
  over the same components (Qwen2.5-VL text encoder, Qwen-Image VAE, Qwen-Image transformer). Their
  VAE downscales by 16, not 8 (see ``_qwen_components``), so these two take multiples of 32.

The architectures are the real ones with every width shrunk; the weights are random, so the edits
are noise shaped by the inputs: these models prove code paths, not quality. Tokenizers are learned
here from a fixed corpus, deterministically (CLIP's byte-level BPE, a T5 unigram vocabulary, Qwen2's
byte-level BPE with Qwen's special tokens); nothing is downloaded. Two builds are byte-identical.

What an editor must pass for a 64x64 edit (see src/models/editing/diffusers_editor.py):
IP2P takes no height/width (the output has the input image's size, in multiples of 8); Kontext
needs ``height``, ``width``, ``max_area=height*width`` and ``_auto_resize=False`` (multiples of 16);
the Qwen pipelines take ``height``/``width`` (multiples of 32 here) but always VAE-encode the
source at ~1024x1024, which dominates their CPU time.

The tests and the demo use the pinned build checked in under ``src/tools/pinned/``
(``ensure_tiny_editors`` installs it, SHA-256 verified; see ``pinned``): random initialisation runs
through kernels that differ between CPUs too. A change to this file that changes the pipelines must
bump EDITOR_BUILDERS_VERSION and re-pin them (``make models-rebuild``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

from .make_tiny_models import SPECIAL_TOKENS

logger = logging.getLogger(__name__)


EDITOR_BUILDERS_VERSION = "1"
INFO_FILE = "editjudge_tiny.json"

# Qwen-Image-Edit's system prompt, as the pipelines format it. The pipelines drop the first 64
# tokens of the encoded prompt (prompt_template_encode_start_idx), which is this prefix in Qwen's
# real tokenizer; the tiny tokenizer learns it whole, and the build checks that it is 64 tokens.
QWEN_EDIT_PREFIX = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects,"
    " background), then explain how the user's text instruction should alter or modify the image. Generate a"
    " new image that meets the user's requirements while maintaining consistency with the original input"
    " where appropriate.<|im_end|>\n<|im_start|>user\n"
)
QWEN_EDIT_DROP_TOKENS = 64

EDIT_INSTRUCTIONS = [
    "make the sky blue", "add a red hat to the person", "remove the cup from the table",
    "turn the photo into a watercolor painting", "change the text on the sign to OPEN",
    "make it look like winter", "replace the cat with a dog", "make the car green",
    "add sunglasses", "show what happens after the ice melts", "make the rocket launch",
    "change the background to a beach", "convert to black and white", "add a rainbow",
    "remove the person on the left", "make the coffee look cold", "add snow on the ground",
    "change the material of the chair to wood", "make it night", "A painting of a squirrel eating a burger",
    "blurry, low quality, distorted", "Picture 1: Picture 2: Picture 3:",
]


def _corpus() -> list[str]:
    lines = list(EDIT_INSTRUCTIONS)
    lines += [f"Picture {i}: " for i in range(1, 4)]
    lines += ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?\"'(){}[]<>/\\-_=+*&%$#@"]
    return lines


# ---------------------------------------------------------------------------------------------
# Tokenizers, learned locally


def learn_bpe(
    words: Counter, *, num_merges: int, end_of_word: str = "", min_frequency: int = 2
) -> list[tuple[str, str]]:
    """Byte-pair merges learned from pre-tokenized ``words`` (word -> count), deterministically.

    The tokenizers library's BpeTrainer breaks ties between equally frequent pairs in hash order,
    so two builds would get different merges; here ties go to the smallest pair.
    """
    seqs = {w: (*w[:-1], w[-1] + end_of_word) for w in sorted(words)}
    merges = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for word, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        (a, b), count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < min_frequency:
            break
        merges.append((a, b))
        for word, seq in seqs.items():
            merged, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(seq[i])
                    i += 1
            seqs[word] = tuple(merged)
    return merges


def _bpe_vocab(specials: list[str], alphabet: list[str], merges: list[tuple[str, str]]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for token in [*specials, *alphabet, *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    return vocab


def _pretokenized_words(backend, lines: list[str]) -> Counter:
    """Word counts as the tokenizer's own normalizer and pre-tokenizer split the lines."""
    words: Counter = Counter()
    for line in lines:
        text = backend.normalizer.normalize_str(line) if backend.normalizer else line
        words.update(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text))
    return words


def build_clip_tokenizer(num_merges: int = 400, model_max_length: int = 77):
    """CLIP's byte-level BPE (lowercase, ``</w>`` word ends) learned from the corpus, as a CLIPTokenizer."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    # An empty CLIPTokenizer carries CLIP's normalizer and pre-tokenizer, so the merges are
    # learned on the very words that it will see.
    words = _pretokenized_words(CLIPTokenizer().backend_tokenizer, _corpus())
    merges = learn_bpe(words, num_merges=num_merges, end_of_word="</w>", min_frequency=1)
    # Like CLIP's vocabulary: every byte alone and as a word end, so that nothing encodes to unk.
    alphabet = [t for c in sorted(pre_tokenizers.ByteLevel.alphabet()) for t in (c, c + "</w>")]
    vocab = _bpe_vocab([bos, eos], alphabet, merges)
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=bos, eos_token=eos, pad_token=eos,
                         unk_token=eos, model_max_length=model_max_length)


def build_t5_tokenizer(model_max_length: int = 512):
    """A unigram vocabulary in T5's layout (<pad>, </s>, <unk>, pieces), as a T5Tokenizer.

    Counted here rather than trained: the tokenizers UnigramTrainer's EM runs in parallel and its
    scores differ between runs. Pieces are the corpus's words with and without the ``▁`` word
    start, scored by log frequency, plus every character at a low score so that any text encodes.
    """
    import math
    import re

    from transformers import T5Tokenizer

    words = Counter(w for line in _corpus() for w in re.findall(r"\w+|[^\w\s]", line.lower()))
    total = sum(words.values())
    pieces: dict[str, float] = {}
    for word, count in words.items():
        pieces["▁" + word] = math.log(count / total)
        pieces.setdefault(word, math.log(count / total) - 2.0)
    for char in sorted({c for line in _corpus() for c in line if not c.isspace()}):
        pieces.setdefault(char, -20.0)
        pieces.setdefault("▁" + char, -19.0)
    pieces["▁"] = -3.0
    ordered = sorted(pieces.items(), key=lambda item: (-item[1], item[0]))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, round(score, 6)) for p, score in ordered]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def build_qwen_tokenizer(num_merges: int = 800):
    """A byte-level BPE with Qwen2's pre-tokenizer and Qwen's special tokens, as a Qwen2Tokenizer.

    The corpus includes Qwen-Image-Edit's system prompt, so that (as with Qwen's real tokenizer)
    it encodes to the 64 tokens that the pipelines drop and the transformer sees the user's words.
    """
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    system = QWEN_EDIT_PREFIX.replace("<|im_start|>", "").replace("<|im_end|>", "")
    # Qwen2Tokenizer's backend without a vocabulary still splits text the Qwen2 way.
    words = _pretokenized_words(Qwen2Tokenizer().backend_tokenizer, _corpus() + [system] * 2)
    merges = learn_bpe(words, num_merges=num_merges, min_frequency=1)
    vocab = _bpe_vocab([], sorted(pre_tokenizers.ByteLevel.alphabet()), merges)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=SPECIAL_TOKENS,
        model_max_length=32768,
    )


def build_qwen_processor(tokenizer):
    """Qwen2-VL's processor with a small pixel budget: the edit pipelines hand it ~1024x1024 images."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    common = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112}, **common)
    video_processor = Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112 * 2}, **common)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


# ---------------------------------------------------------------------------------------------
# Pipelines


def _clip_text_encoder(tokenizer, *, hidden: int = 32, seed: int = 0):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def _sd_vae(*, latent_channels: int, seed: int, quant_conv: bool, **scaling):
    """An AutoencoderKL with SD/Flux's four levels (so images are downscaled by 8) and 8 channels."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=quant_conv,
        use_post_quant_conv=quant_conv,
        **scaling,
    ).eval()


def build_instruct_pix2pix(seed: int = 0):
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    tokenizer = build_clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden=32, seed=seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,  # noisy latents + the source image's latents
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=32,
        attention_head_dim=2,
    ).eval()
    vae = _sd_vae(latent_channels=4, seed=seed, quant_conv=True, scaling_factor=0.18215)
    # timbrooks/instruct-pix2pix's scheduler settings.
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", steps_offset=1,
    )
    return StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )


def build_flux_kontext(seed: int = 0):
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden=32, seed=seed)
    tokenizer_2 = build_t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu", pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id, decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    ).eval()
    latent_channels = 16  # Flux's; the transformer sees 2x2 patches of them: 64 inputs
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=latent_channels * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5's d_model
        pooled_projection_dim=32,  # CLIP's hidden size
        guidance_embeds=True,  # Kontext [dev] is guidance-distilled
        axes_dims_rope=(4, 6, 6),
    ).eval()
    vae = _sd_vae(latent_channels=latent_channels, seed=seed, quant_conv=False,
                  scaling_factor=0.3611, shift_factor=0.1159)
    # black-forest-labs/FLUX.1-Kontext-dev's scheduler settings.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
        base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
    )
    return FluxKontextPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
        image_encoder=None, feature_extractor=None,
    )


def _qwen_components(seed: int = 0) -> dict:
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_qwen_tokenizer()
    prefix_tokens = len(tokenizer(QWEN_EDIT_PREFIX)["input_ids"])
    if prefix_tokens != QWEN_EDIT_DROP_TOKENS:
        raise RuntimeError(f"Qwen-Image-Edit's system prompt is {prefix_tokens} tokens in the tiny tokenizer; "
                           f"the pipelines drop {QWEN_EDIT_DROP_TOKENS}")
    processor = build_qwen_processor(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    hidden = 16
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": hidden * 2,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [1, 1, 2]},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    z_dim = 4
    torch.manual_seed(seed)
    # The edit pipelines always VAE-encode the source at ~1024x1024, whatever the output size, and
    # CPU conv3d at that size is slow: this VAE has no full-resolution residual blocks and halves
    # four times (/16, where Qwen-Image's halves three times), so its 1024x1024 encode is ~10x
    # cheaper. Sizes are then multiples of 32 (vae_scale_factor 16 times the 2x2 packing).
    vae = AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, True, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    ).eval()
    with torch.no_grad():
        # At random init the last causal conv sees two zero-padded frames of three and its output
        # barely moves (std ~0.09 on [-1, 1]); scaled up, edits differ visibly with seed and input.
        vae.decoder.conv_out.weight.mul_(4.0)
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=z_dim * 4,
        out_channels=z_dim,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=hidden,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    ).eval()
    # Qwen/Qwen-Image-Edit's scheduler settings.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
        time_shift_type="exponential",
    )
    return {
        "scheduler": scheduler, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
        "processor": processor, "transformer": transformer,
    }


def build_qwen_image_edit(seed: int = 0):
    from diffusers import QwenImageEditPipeline

    return QwenImageEditPipeline(**_qwen_components(seed))


def build_qwen_image_edit_plus(seed: int = 0):
    from diffusers import QwenImageEditPlusPipeline

    return QwenImageEditPlusPipeline(**_qwen_components(seed))


BUILDERS = {
    "instruct-pix2pix": build_instruct_pix2pix,
    "flux-kontext": build_flux_kontext,
    "qwen-image-edit": build_qwen_image_edit,
    "qwen-image-edit-plus": build_qwen_image_edit_plus,
}


def build_editor(name: str, out_dir: Path, *, seed: int = 0) -> Path:
    started = time.perf_counter()
    pipe = BUILDERS[name](seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    parameters = {
        key: sum(p.numel() for p in module.parameters())
        for key, module in pipe.components.items()
        if hasattr(module, "parameters")
    }
    info = {
        "builder_version": EDITOR_BUILDERS_VERSION,
        "pipeline": type(pipe).__name__,
        "seed": seed,
        "parameters": parameters,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    logger.info("tiny editor %s written to %s (%s)", name, out_dir, info)
    return out_dir


def editor_path(name: str) -> str:
    """An editor's folder below a cache folder: ``v<EDITOR_BUILDERS_VERSION>/<name>``."""
    return f"v{EDITOR_BUILDERS_VERSION}/{name}"


def ensure_tiny_editors(root: str | os.PathLike, names: list[str] | None = None) -> dict[str, Path]:
    """The tiny edit pipelines under ``root/v<EDITOR_BUILDERS_VERSION>``: the pinned, SHA-256-verified files."""
    from .pinned import tiny_model

    paths = {}
    for name in names or list(BUILDERS):
        if name not in BUILDERS:
            raise ValueError(f"unknown tiny editor {name!r}; known: {', '.join(BUILDERS)}")
        paths[name] = tiny_model(name, root)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="cache folder; pipelines land in OUT/v<version>/")
    parser.add_argument("--only", nargs="*", choices=list(BUILDERS), help="build only these editors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = ensure_tiny_editors(args.out, args.only)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
