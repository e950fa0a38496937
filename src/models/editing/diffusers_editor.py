"""The ``diffusers`` editor backend: any supported diffusers edit pipeline, loaded once, fed in batches.

    editor = DiffusersEditor("ip2p", ".cache/tiny-models/v1/instruct-pix2pix", params={"num_inference_steps": 2})
    images = editor.edit([EditRequest("item-1", Path("cat.png"), "make it night", seed=1234)])

What the editor passes to each pipeline lives in PIPELINES, keyed by the pipeline's class name
(``_class_name`` in model_index.json). For every request the editor

- opens the source (a source that cannot be opened becomes that item's exception);
- scales it down to about ``max_area`` pixels when it is larger (aspect ratio kept; no limit
  by default), then to the nearest size the pipeline accepts: both sides rounded to a multiple of
  the pipeline's ``image_processor`` scale factor (8 for Stable Diffusion's VAE, 16 for Flux and
  Qwen-Image: VAE /8 times 2x2 latent packing), at least one multiple;
- asks for an output of that same size (``height``/``width`` where the pipeline takes them, plus
  ``max_area`` and ``_auto_resize=False`` for Flux Kontext, which otherwise rescales to ~1 MP), and
  resizes the result back to the source's size with LANCZOS. ``height`` and ``width`` in ``params``
  fix the output size instead; the result is then returned at that size.

Requests are grouped by that pipeline size (the pipelines size a whole batch from its first
image) and sent ``batch_size`` at a time with one ``torch.Generator`` per item, seeded with the
request's seed. When a batch call raises, that batch is retried one item at a time (logged and
counted in ``batch_fallbacks``), so that one bad item fails alone.

Memory (``offload``, ``vae_tiling``, ``vae_slicing`` in the editor entry): ``offload: model`` keeps
each component (text encoder, transformer/UNet, VAE) in host memory and moves it to the worker's GPU
while it runs (diffusers' ``enable_model_cpu_offload``: about the largest component's size on the
GPU, little slower); ``offload: sequential`` streams every submodule's weights in as it runs
(``enable_sequential_cpu_offload``: least GPU memory, much slower). Both compute on the worker's
GPU with the same kernels, so they do not change pixels (``PIXEL_NEUTRAL_KEYS``). ``vae_tiling``
decodes large images in overlapping tiles and ``vae_slicing`` decodes a batch one image at a
time; both change pixels slightly (blended tile seams; per-image kernels), so they belong to what
decides an edit. On the CPU there is nothing to offload to: ``offload: model`` still runs through
the same hooks (pixels unchanged) with a warning that it saves nothing, and ``offload: sequential``
is an error (accelerate's per-submodule hooks need an accelerator).

When a batch runs out of memory the retry starts after the ``except`` block, once the exception
(whose traceback holds the failed call's activations) is gone and memory is collected and released;
an item's failure is returned as its exception with the traceback and chained exceptions cut, so
results never pin a failed call's tensors.

Reproducibility: an item's noise comes from its own CPU generator, so its edit does not depend on
its neighbours in principle, but in floating point it does a little: CPU (and GPU) kernels pick
their summation order from the whole batch's shape (oneDNN convolutions; matmuls with one row, such
as the timestep-embedding MLPs, versus several), so an item edited in a batch of 3 differs from the
same item edited alone by ~1e-6 in float, i.e. +-1 on a few 8-bit pixels with the tiny pipelines.
The same batch always gives the same images (at a fixed CPU thread count), so the pipeline deals
out fixed batches of the benchmark, not single items, and redoes a partly finished batch whole:
edits are then bit-identical whatever the number of workers (see ``editjudge.edit_stage.edit_shard``).
"""

from __future__ import annotations

import difflib
import gc
import inspect
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ...images import load_image
from ...torch_utils import DTYPE_NAMES, is_out_of_memory, resolve_dtype
from . import EditRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSpec:
    """How to call one diffusers pipeline class."""

    takes_size: bool = True  # has height/width; otherwise the output has the input image's size
    image_list_per_prompt: bool = False  # `image` is a list of images for each prompt
    max_batch: int | None = None  # prompts per call the pipeline supports
    defaults: dict[str, Any] = field(default_factory=dict)  # overridable by params
    derived: tuple[str, ...] = ()  # set by the editor from the size; not allowed in params
    # Negative prompt to use when true CFG is on (true_cfg_scale > 1, the default) and none is given:
    # without one these pipelines skip CFG (warning on every call). " " is the Qwen model cards' own.
    cfg_negative_prompt: str | None = None


PIPELINES: dict[str, PipelineSpec] = {
    # prompt, image, guidance_scale, image_guidance_scale; the output has the input image's size.
    "StableDiffusionInstructPix2PixPipeline": PipelineSpec(takes_size=False),
    # Kontext rescales the output to max_area (default 1024**2) and, with _auto_resize, the input to
    # its preferred resolutions; max_area=height*width and _auto_resize=False keep the given size.
    "FluxKontextPipeline": PipelineSpec(defaults={"_auto_resize": False}, derived=("max_area",)),
    # The source is always VAE-encoded at ~1024x1024 (and shown to Qwen2.5-VL) whatever the
    # output size; height/width only set the output.
    "QwenImageEditPipeline": PipelineSpec(cfg_negative_prompt=" "),
    # One prompt per call; `image` is the list of reference images of that prompt.
    "QwenImageEditPlusPipeline": PipelineSpec(image_list_per_prompt=True, max_batch=1, cfg_negative_prompt=" "),
}

# Arguments the editor always sets itself.
RESERVED_PARAMS = ("prompt", "image", "generator", "num_images_per_prompt", "output_type", "return_dict")
# Per-prompt string arguments that are expanded to one entry per prompt of a batch.
PER_PROMPT_PARAMS = ("negative_prompt", "prompt_2", "negative_prompt_2")

OFFLOAD_MODES = ("none", "model", "sequential")
# Editor entry keys that change where the weights live or how fast, never the pixels: an edit made with
# other values of these is still the same edit (for the edit-settings hash of resume). Every other key of
# an editor entry (model_path, params, dtype, max_area, batch_size, vae_tiling, vae_slicing, ...) can
# change pixels.
PIXEL_NEUTRAL_KEYS = frozenset({"offload"})


def _detached(exc: BaseException) -> BaseException:
    """``exc`` without its traceback and chained exceptions, whose frames hold the failed call's tensors."""
    exc.__traceback__ = None
    exc.__context__ = exc.__cause__ = None
    return exc



def _read_model_index(model_path: str) -> tuple[Path | None, str | None]:
    """The model_index.json of a local folder or of a hub id already in the HF cache, or a problem."""
    path = Path(model_path).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            return None, f"model_path: {path} has no model_index.json (not a diffusers pipeline folder)"
        return index, None
    if path.exists():
        return None, f"model_path: {path} is a file, expected a diffusers pipeline folder"
    if model_path.count("/") != 1 or model_path.startswith((".", "/", "~")):
        return None, f"model_path: {model_path} does not exist"
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model_path, "model_index.json")
    except ValueError as exc:  # not a valid repo id
        return None, f"model_path: {model_path} does not exist ({exc})"
    if isinstance(cached, str):
        return Path(cached), None
    if constants.HF_HUB_OFFLINE:
        return None, (f"model_path: {model_path} is neither a local folder nor in the Hugging Face cache, and "
                      "HF_HUB_OFFLINE is set (download it first, e.g. `hf download`, or use a local folder)")
    from ...hub import network_problem

    problem = network_problem()  # probed once per process: seconds, not the hub client's retries
    if problem:
        return None, f"model_path: {model_path} is not in the Hugging Face cache and there is {problem}"
    # Online: fetch only the small model_index.json, so the params are checked before any weights load.
    try:
        return Path(hf_hub_download(model_path, "model_index.json")), None
    except Exception as exc:  # no such repo, no network, gated: all mean the editor cannot load
        return None, f"model_path: cannot read {model_path}/model_index.json from the hub: {type(exc).__name__}: {exc}"


def _pipeline_class(name: str):
    import diffusers

    cls = getattr(diffusers, name, None) if name.isidentifier() else None
    if cls is None or not (inspect.isclass(cls) and issubclass(cls, diffusers.DiffusionPipeline)):
        return None
    return cls


def _call_parameters(cls) -> set[str]:
    """Named parameters of the pipeline's __call__ (a **kwargs catch-all does not count)."""
    params = inspect.signature(cls.__call__).parameters.values()
    return {
        p.name for p in params
        if p.name != "self" and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }


def _spec_for(cls) -> PipelineSpec:
    return PIPELINES[cls.__name__]


def config_problems(config_or_model_path, params: dict | None = None, batch_size: int = 1) -> list[str]:
    """Everything wrong with an editor's settings, found without loading any weights.

    Takes an editor config (``model_path``, ``params``, ``batch_size`` attributes, as
    ``editjudge.models.editing.editor_problems`` passes) or those three values. Each problem starts with
    the setting it is about (``model_path: ...``, ``params.KEY: ...``).
    """
    if isinstance(config_or_model_path, (str, os.PathLike)) or config_or_model_path is None:
        model_path = config_or_model_path
        problems = []
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            problems.append(f"batch_size: must be a positive integer, got {batch_size!r}")
    else:  # editor_problems has checked batch_size >= 1 already
        config = config_or_model_path
        model_path, params, batch_size = config.model_path, config.params, config.batch_size
        problems = []
        if config.dtype not in DTYPE_NAMES:
            problems.append(f"dtype: must be one of {', '.join(DTYPE_NAMES)}, got {config.dtype!r}")
        if config.max_area is not None and config.max_area < 64:
            problems.append(f"max_area: must be at least 64 pixels, got {config.max_area}")
        if config.offload not in OFFLOAD_MODES:
            problems.append(f"offload: must be one of {', '.join(OFFLOAD_MODES)}, got {config.offload!r}")
    params = params or {}
    if not model_path:
        return problems + ["model_path: required for type 'diffusers'"]
    index, problem = _read_model_index(str(model_path))
    if problem:
        return problems + [problem]
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as exc:
        return problems + [f"model_path: {index} is not a readable model_index.json: {exc}"]
    cls = _pipeline_class(class_name) if isinstance(class_name, str) else None
    if cls is None or class_name not in PIPELINES:
        what = "a diffusers pipeline the diffusers editor does not support" if cls else "not a diffusers pipeline class"
        supported = ", ".join(sorted(PIPELINES))
        return problems + [f"model_path: _class_name {class_name!r} in {index} is {what}; supported: {supported}"]
    spec = _spec_for(cls)
    if not isinstance(config_or_model_path, (str, os.PathLike)) and config_or_model_path is not None:
        problems.extend(_vae_problems(index, config_or_model_path))
    accepted = _call_parameters(cls)
    for key in params:
        if key in RESERVED_PARAMS or key in spec.derived:
            problems.append(
                f"params.{key}: set by the diffusers editor itself (it passes "
                f"{', '.join(RESERVED_PARAMS + spec.derived)}); remove it"
            )
        elif key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else f"accepted: {', '.join(sorted(accepted))}"
            problems.append(f"params.{key}: not a parameter of {class_name}; {hint}")
    if spec.takes_size and (("height" in params) != ("width" in params)):
        problems.append("params.height/params.width: give both or neither (neither: the source's size)")
    if spec.max_batch is not None and isinstance(batch_size, int) and batch_size > spec.max_batch:
        problems.append(f"batch_size: {class_name} takes at most {spec.max_batch} prompt(s) per call; "
                        f"set batch_size: {spec.max_batch}")
    return problems


def _vae_problems(index: Path, config) -> list[str]:
    """vae_tiling / vae_slicing need a VAE that has them."""
    wanted = [key for key in ("vae_tiling", "vae_slicing") if getattr(config, key, False)]
    if not wanted:
        return []
    import diffusers

    entry = json.loads(index.read_text()).get("vae")
    cls = getattr(diffusers, entry[1], None) if isinstance(entry, list) and len(entry) == 2 else None
    if cls is None:
        return [f"{key}: the pipeline in {index.parent} has no diffusers VAE" for key in wanted]
    method = {"vae_tiling": "enable_tiling", "vae_slicing": "enable_slicing"}
    return [f"{key}: {cls.__name__} does not support it" for key in wanted if not hasattr(cls, method[key])]


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, int(math.floor(value / multiple + 0.5)) * multiple)


class DiffusersEditor:
    """An Editor over a diffusers edit pipeline; see the module docstring for what it passes."""

    def __init__(
        self,
        name: str,
        model_path: str,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        params: dict | None = None,
        batch_size: int = 1,
        trust_remote_code: bool = False,
        max_area: int | None = None,
        offload: str = "none",
        vae_tiling: bool = False,
        vae_slicing: bool = False,
    ):
        import torch
        from diffusers import DiffusionPipeline

        self.name = name
        self.model_path = str(model_path)
        self.device = device
        self.params = dict(params or {})
        self.batch_size = batch_size
        self.max_area = max_area
        problems = config_problems(self.model_path, self.params, batch_size)
        if offload not in OFFLOAD_MODES:
            problems.append(f"offload: must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
        if problems:
            raise ValueError(f"editor {name}: " + "; ".join(problems))
        self._torch = torch
        self.torch_dtype = resolve_dtype(dtype, device)
        # `dtype`, not `torch_dtype` (deprecated in diffusers 0.42). A hub id not yet in the HF cache
        # is downloaded here unless HF_HUB_OFFLINE is set (then config_problems has refused it).
        self.pipe = DiffusionPipeline.from_pretrained(
            self.model_path, dtype=self.torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True,
        )
        self.offload = offload
        self._place(device, offload)
        if vae_tiling:
            self.pipe.vae.enable_tiling()
        if vae_slicing:
            self.pipe.vae.enable_slicing()
        self.pipe.set_progress_bar_config(disable=True)
        self.spec = _spec_for(type(self.pipe))
        self.multiple = int(self.pipe.image_processor.config.vae_scale_factor)
        signature = inspect.signature(type(self.pipe).__call__).parameters
        self._default_true_cfg = signature["true_cfg_scale"].default if "true_cfg_scale" in signature else None
        self.batch_fallbacks = 0
        logger.info("editor %s: %s from %s on %s (%s, offload %s%s%s), sizes in multiples of %d",
                    name, type(self.pipe).__name__, self.model_path, device, self.torch_dtype, offload,
                    ", VAE tiling" if vae_tiling else "", ", VAE slicing" if vae_slicing else "", self.multiple)

    def _place(self, device: str, offload: str) -> None:
        """The pipeline on ``device``, or kept in host memory and moved there piece by piece (offload)."""
        if offload == "none":
            self.pipe.to(device)
            return
        if device == "cuda":  # diffusers would take cuda:0, not this worker's current GPU
            device = f"cuda:{self._torch.cuda.current_device()}"
        if self._torch.device(device).type == "cpu":
            if offload == "sequential":  # accelerate's per-submodule hooks do not run with the CPU as executor
                raise ValueError(f"editor {self.name}: offload: sequential needs a GPU; on the CPU use offload: none")
            logger.warning("editor %s: offload %s on the CPU saves nothing (the weights are in host memory already)",
                           self.name, offload)
        if offload == "model":
            self.pipe.enable_model_cpu_offload(device=device)
        else:
            self.pipe.enable_sequential_cpu_offload(device=device)

    # What an editor entry of type diffusers may set beside name and type.
    # Left out of the edit key (editjudge.resume): they change where weights wait, not the pixels.
    PIXEL_NEUTRAL_KEYS = PIXEL_NEUTRAL_KEYS
    CONFIG_KEYS = frozenset({"model_path", "params", "batch_size", "dtype", "trust_remote_code", "max_area",
                             "offload", "vae_tiling", "vae_slicing"})

    @classmethod
    def config_problems(cls, config_or_model_path, params: dict | None = None, batch_size: int = 1) -> list[str]:
        """See the module-level ``config_problems``: checks the settings without loading weights."""
        return config_problems(config_or_model_path, params, batch_size)

    @classmethod
    def from_config(cls, config, device: str) -> "DiffusersEditor":
        """From an editor config entry (editjudge.config.EditorConfig) on ``device``."""
        return cls(config.name, config.model_path, device=device, dtype=config.dtype, params=config.params,
                   batch_size=config.batch_size, trust_remote_code=config.trust_remote_code,
                   max_area=config.max_area, offload=config.offload, vae_tiling=config.vae_tiling,
                   vae_slicing=config.vae_slicing)

    # -- sizes -------------------------------------------------------------------------------

    def pipeline_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) at which a source of ``size`` is fed to the pipeline.

        Larger than ``max_area`` pixels: scaled down to about that area, aspect ratio kept.
        """
        width, height = size
        if self.max_area and width * height > self.max_area:
            scale = math.sqrt(self.max_area / (width * height))
            width, height = width * scale, height * scale
        return _round_to(width, self.multiple), _round_to(height, self.multiple)

    def _output_size(self, fed: tuple[int, int]) -> tuple[int, int]:
        if self.spec.takes_size and "width" in self.params:
            return int(self.params["width"]), int(self.params["height"])
        return fed

    # -- calls -------------------------------------------------------------------------------

    def _call_kwargs(self, prompts: list[str], images: list[Image.Image], seeds: list[int]) -> dict:
        spec = self.spec
        kwargs = dict(spec.defaults)
        true_cfg = self.params.get("true_cfg_scale", self._default_true_cfg)
        if spec.cfg_negative_prompt is not None and true_cfg is not None and true_cfg > 1:
            kwargs["negative_prompt"] = spec.cfg_negative_prompt
        kwargs.update(self.params)
        for key in PER_PROMPT_PARAMS:
            if isinstance(kwargs.get(key), str):
                kwargs[key] = [kwargs[key]] * len(prompts)
        if spec.takes_size:
            width, height = self._output_size(images[0].size)
            kwargs["width"], kwargs["height"] = width, height
            if "max_area" in spec.derived:
                kwargs["max_area"] = width * height
        # CPU generators: the same noise on every device, one stream per item so that an item's
        # noise does not depend on its batch.
        generators = [self._torch.Generator("cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF) for seed in seeds]
        kwargs.update(
            prompt=list(prompts),
            image=[[im] for im in images] if spec.image_list_per_prompt else list(images),
            generator=generators,
            num_images_per_prompt=1,
            output_type="pil",
            return_dict=True,
        )
        if spec.image_list_per_prompt and len(prompts) == 1:
            kwargs["image"] = kwargs["image"][0]
        return kwargs

    def _run(self, prompts: list[str], images: list[Image.Image], seeds: list[int]) -> list[Image.Image]:
        out = self.pipe(**self._call_kwargs(prompts, images, seeds)).images
        if len(out) != len(prompts):
            raise RuntimeError(f"{type(self.pipe).__name__} returned {len(out)} images for {len(prompts)} prompts")
        return [im.convert("RGB") for im in out]

    def _run_chunk(self, chunk: list[tuple[int, EditRequest, Image.Image]]) -> list[Image.Image | Exception]:
        prompts = [req.instruction for _, req, _ in chunk]
        images = [im for _, _, im in chunk]
        seeds = [req.seed for _, req, _ in chunk]
        try:
            return self._run(prompts, images, seeds)
        except Exception as exc:  # noqa: BLE001 - retried item by item below, each failure kept
            failure = _detached(exc)
        # Out of the except block and without its traceback: the failed call's tensors can be freed now.
        if is_out_of_memory(failure):
            self._free_cuda()
        if len(chunk) == 1:
            logger.warning("editor %s: item %s failed: %s", self.name, chunk[0][1].item_id, failure)
            return [failure]
        self.batch_fallbacks += 1
        logger.warning("editor %s: batch of %d failed (%s: %s); retrying one item at a time",
                       self.name, len(chunk), type(failure).__name__, failure)
        del failure
        return [self._run_chunk([item])[0] for item in chunk]

    def edit(self, requests: list[EditRequest]) -> list[Image.Image | Exception]:
        if self.pipe is None:
            raise RuntimeError(f"editor {self.name} is closed")
        results: list[Image.Image | Exception | None] = [None] * len(requests)
        groups: dict[tuple[int, int], list[tuple[int, EditRequest, Image.Image]]] = {}
        source_sizes = {}
        for i, req in enumerate(requests):
            try:
                source = load_image(req.source)
            except Exception as exc:  # noqa: BLE001 - the item's result is its exception
                logger.warning("editor %s: item %s: %s", self.name, req.item_id, exc)
                results[i] = _detached(exc)
                continue
            source_sizes[i] = source.size
            fed = self.pipeline_size(source.size)
            if fed != source.size:
                source = source.resize(fed, Image.Resampling.LANCZOS)
            groups.setdefault(fed, []).append((i, req, source))
        step = min(self.batch_size, self.spec.max_batch or self.batch_size)
        for items in groups.values():
            for start in range(0, len(items), step):
                chunk = items[start:start + step]
                for (i, _, _), out in zip(chunk, self._run_chunk(chunk)):
                    results[i] = out
        keep_size = not (self.spec.takes_size and "width" in self.params)
        for i, out in enumerate(results):
            if isinstance(out, Image.Image) and keep_size and out.size != source_sizes[i]:
                results[i] = out.resize(source_sizes[i], Image.Resampling.LANCZOS)
        return results

    # -- teardown ----------------------------------------------------------------------------

    def _free_cuda(self) -> None:
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the pipeline (and its offload hooks) and give its memory back."""
        if self.pipe is not None and self.offload != "none":
            self.pipe.remove_all_hooks()
        self.pipe = None
        self._free_cuda()
