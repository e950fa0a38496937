"""Settings of the Qwen3-VL reward model: accepted values, checked once with every problem named."""

from __future__ import annotations

import importlib.util

from ...torch_utils import DTYPE_NAMES
from .adapters import adapter_fingerprint, adapter_problems
from .placement import placement_problems
from .prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT

# Part of the scoring settings hash: bump it when a change to the judge's code changes the scores
# that the same settings give, so that a resumed run rescores instead of mixing old and new scores.
# 2: sources always shown, float32 logits, greedy without the checkpoint's generation_config,
#    the first JSON answer decides, answers read after </think>.
SCORING_VERSION = 2

SCORE_MODES = ("generate", "logits")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
QUANTIZATIONS = ("int8",)


def setting_problems(values: dict) -> list[str]:
    """Problems with the given settings (only the keys present are checked)."""
    problems = []

    def check(key, ok, expected):
        if key in values and not ok(values[key]):
            problems.append(f"{key} must be {expected}, got {values[key]!r}")

    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    check("batch_size", lambda v: v == "auto" or (is_int(v) and v >= 1), "'auto' or a positive integer")
    check("dtype", lambda v: v in DTYPE_NAMES, f"'auto' or one of {[d for d in DTYPE_NAMES if d != 'auto']}")
    check("score_mode", lambda v: v in SCORE_MODES, f"one of {list(SCORE_MODES)}")
    check("max_new_tokens", lambda v: is_int(v) and v >= 1, "a positive integer")
    check("attn_implementation", lambda v: v in ATTN_IMPLEMENTATIONS, f"one of {list(ATTN_IMPLEMENTATIONS)}")
    check("quantization", lambda v: v is None or v in QUANTIZATIONS, f"null or one of {list(QUANTIZATIONS)}")
    check("prefetch", lambda v: v == "auto" or isinstance(v, bool), "'auto', true or false")
    for key in ("min_pixels", "max_pixels"):
        check(key, lambda v: v is None or (is_int(v) and v >= 1), "null or a positive integer (pixels)")
    if all(is_int(values.get(k)) for k in ("min_pixels", "max_pixels")) and values["min_pixels"] > values["max_pixels"]:
        problems.append(f"min_pixels ({values['min_pixels']}) must not exceed max_pixels ({values['max_pixels']})")
    if "sampling" in values:
        from .sampling import sampling_problems  # imports torch: only when sampling is configured

        problems.extend(sampling_problems(values["sampling"]))
        if values["sampling"] is not None and values.get("score_mode") == "logits":
            problems.append("sampling applies to score_mode 'generate' (logits mode reads the digit distribution "
                            "itself, with nothing to sample)")
    for key in ("group_by_length", "stop_early", "use_batch_inference", "compare_with_original", "text_before_images"):
        check(key, lambda v: isinstance(v, bool), "true or false")
    if "score_range" in values:
        score_range = values["score_range"]
        try:
            low, high = (float(v) for v in score_range)
        except (TypeError, ValueError):
            low = high = None
        if low is None or not low < high:
            problems.append(f"score_range must be [low, high] with low < high, got {score_range!r}")
        elif values.get("score_mode") == "logits" and not (0 <= low and high <= 10 and low.is_integer()
                                                            and high.is_integer()):
            problems.append("score_mode 'logits' reads one digit (or '10'): score_range must be integers in 0-10, "
                            f"got {score_range!r}")
    if values.get("attn_implementation") == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            problems.append("attn_implementation 'flash_attention_2' needs the flash-attn package, which is not "
                            "installed (use 'sdpa')")
        device = values.get("device", "")
        if str(device[0] if isinstance(device, (list, tuple)) and device else device).startswith("cpu"):
            problems.append("attn_implementation 'flash_attention_2' runs on CUDA only (use 'sdpa' on CPU)")
        if values.get("dtype") == "float32":
            problems.append("attn_implementation 'flash_attention_2' needs dtype bfloat16 or float16, got 'float32'")
    if values.get("quantization") == "int8" and importlib.util.find_spec("torchao") is None:
        problems.append("quantization 'int8' needs the torchao package, which is not installed")
    problems.extend(placement_problems(values))  # a device group, max_memory
    if "adapter_path" in values or "merge_adapter" in values:
        problems.extend(adapter_problems(values))
    return problems


# Every key a ``reward_model.params`` block may hold: the model's constructor arguments (a test keeps
# this in step with ``Qwen3VLRewardModel.__init__``) and the keys the pipeline reads itself.
MODEL_PARAMS = ("model_path", "device", "dtype", "attn_implementation", "batch_size", "use_batch_inference",
                "max_new_tokens", "min_pixels", "max_pixels", "system_prompt", "user_prompt", "compare_with_original",
                "score_mode", "score_range", "logits_prefix", "trust_remote_code", "show_progress", "group_by_length",
                "prefetch", "stop_early", "quantization", "max_memory", "sampling", "adapter_path", "merge_adapter",
                "text_before_images")
PIPELINE_PARAMS = ("rubric", "viescore_prompts_dir", "protocol")  # protocol: a benchmark's own scoring
ACCEPTED_PARAMS = MODEL_PARAMS + PIPELINE_PARAMS
# The transformers judge's settings that change its speed, never an answer or a failure (each proven so
# in tests/test_judge_identity.py); every other one is part of ``identity_of``.
SPEED_PARAMS = frozenset({"batch_size", "use_batch_inference", "device", "show_progress", "group_by_length",
                          "prefetch", "stop_early", "max_memory"})
# ``Qwen3VLRewardModel.__init__``'s defaults (a test keeps them equal), here so that the identity is known
# without importing torch.
DEFAULTS = {"device": "auto", "dtype": "auto", "attn_implementation": "sdpa", "batch_size": 4,
            "use_batch_inference": True, "max_new_tokens": 64, "min_pixels": None, "max_pixels": None,
            "system_prompt": DEFAULT_SYSTEM_PROMPT, "user_prompt": DEFAULT_USER_PROMPT, "compare_with_original": False,
            "score_mode": "generate", "score_range": [0, 10], "logits_prefix": '{"score": ', "trust_remote_code": False,
            "show_progress": True, "group_by_length": True, "prefetch": "auto", "stop_early": True,
            "quantization": None, "max_memory": None, "sampling": None, "adapter_path": None, "merge_adapter": False,
            "text_before_images": False}
# What computes the transformers judge's numbers: the model code, the kernels, the image resize.
LIBRARIES = ("torch", "torchvision", "transformers", "pillow")


def identity_of(params: dict) -> dict:
    """The transformers judge's identity (``reward.identity``) for the ``reward_model.params`` given: every
    setting but the speed-only ones (defaults filled in; the model and adapter by their fingerprints, not
    their paths), the weights' and adapter's SHA-256 and the versions of ``LIBRARIES`` (``peft`` with an
    adapter, ``torchao`` with quantization)."""
    from .identity import answer_settings, backend_identity, installed_versions, weights_fingerprint

    settings = answer_settings({k: v for k, v in params.items() if k not in PIPELINE_PARAMS}, SPEED_PARAMS, DEFAULTS)
    model_path, adapter_path = settings.pop("model_path"), settings.pop("adapter_path")
    if not settings["text_before_images"]:  # named only when on: identities made before it existed still hold
        del settings["text_before_images"]
    libraries = LIBRARIES + (("peft",) if adapter_path else ()) + (("torchao",) if settings["quantization"] else ())
    extra = {"adapter": adapter_fingerprint(adapter_path)} if adapter_path else {}
    return backend_identity("transformers", settings, weights=weights_fingerprint(model_path),
                            libraries=installed_versions(libraries), **extra)


# What a judge folder (or hub repo) needs before any weights load: alternatives per entry.
JUDGE_FILES = (("config.json",), ("model.safetensors", "model.safetensors.index.json"),
               ("preprocessor_config.json", "processor_config.json"), ("tokenizer.json", "vocab.json"))


def model_path_problems(params: dict) -> list[str]:
    """Whether ``model_path`` has the judge's files (``JUDGE_FILES``): a local folder, or a hub id in the
    HF cache (or on the hub, probed once); the judge's part of ``editjudge.config.model_problems``."""
    from ...hub import model_files_problem

    path = params.get("model_path")
    if not isinstance(path, str) or not path:
        return []  # reported by config_problems
    problem = model_files_problem(path, JUDGE_FILES, "model_path")
    return [f"model_path: {problem}"] if problem else []


def config_problems(params: dict, files: bool = True) -> list[str]:
    """What is wrong with a ``reward_model.params`` block, found without importing torch or loading weights.
    ``files``: also whether the model's files are there (``model_path_problems``)."""
    from ...suggest import unknown_key

    problems = [f"{key}: {unknown_key(key, ACCEPTED_PARAMS)}" for key in params if key not in ACCEPTED_PARAMS]
    path = params.get("model_path")
    if not isinstance(path, str) or not path:
        problems.append("model_path: required, a local folder or a hub id")
    elif files:
        problems.extend(model_path_problems(params))
    problems.extend(setting_problems({k: v for k, v in params.items() if k in MODEL_PARAMS}))
    from .thinking import thinking_problem

    thinking = thinking_problem(params)
    if thinking:
        problems.append(thinking)
    return problems
