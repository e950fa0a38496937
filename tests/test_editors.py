"""The diffusers editor backend on tiny random-weight pipelines built locally (src/tools/make_tiny_editors.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editjudge.models.editing import EditRequest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDITJUDGE_CACHE", ROOT / ".cache" / "tiny-models"))

ALL = ["instruct-pix2pix", "flux-kontext", "qwen-image-edit", "qwen-image-edit-plus"]
BATCHABLE = ["instruct-pix2pix", "flux-kontext", "qwen-image-edit"]  # Qwen-Image-Edit-Plus: one prompt per call
FAST = {"num_inference_steps": 2}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # These models are so small that two OpenMP threads on a shared two-core machine mostly wait
    # for each other (a 50 ms edit can take seconds); outputs are compared within a thread count.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def editor_factory(tiny_editors):
    """DiffusersEditor instances shared by the tests of this module, one per (name, params, batch size)."""
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    made = {}

    def make(name: str, params: dict | None = None, batch_size: int = 2):
        params = {**FAST, **(params or {})}
        key = (name, json.dumps(params, sort_keys=True), batch_size)
        if key not in made:
            made[key] = DiffusersEditor(name, str(tiny_editors[name]), params=params, batch_size=batch_size)
        return made[key]

    yield make
    made.clear()  # close() is tested on its own; one gc.collect per editor here would cost seconds


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Textured sources of different sizes, none a multiple of 32."""
    folder = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(7)
    paths = []
    for i, (w, h) in enumerate([(50, 37), (72, 90), (61, 61)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 60 * i)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"src{i}.png"
        Image.fromarray(pixels, "RGB").save(path)
        paths.append(path)
    return paths


def _requests(sources, seeds, instructions=("make it night", "add a red hat to the person", "make the sky blue")):
    triples = zip(sources, seeds, instructions)
    return [EditRequest(f"item{i}", src, instr, seed) for i, (src, seed, instr) in enumerate(triples)]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ---------------------------------------------------------------------------------------------
# Building


def test_builder_reuses_built_folders(tiny_editors):
    from editjudge.tools.make_tiny_editors import EDITOR_BUILDERS_VERSION, ensure_tiny_editors

    assert set(tiny_editors) == set(ALL)
    for name, path in tiny_editors.items():
        assert path == CACHE / f"v{EDITOR_BUILDERS_VERSION}" / name
        assert (path / "model_index.json").is_file()
    stamp = (tiny_editors["flux-kontext"] / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_editors(CACHE) == tiny_editors
    assert (tiny_editors["flux-kontext"] / "model_index.json").stat().st_mtime_ns == stamp
    assert not list(tiny_editors["flux-kontext"].parent.glob(".building-*"))


def test_the_builder_is_deterministic_on_this_machine(tmp_path):
    """Two fresh builds have the same bytes (weights and the locally learned tokenizers). The pinned files
    may differ from a build here (random initialisation runs through CPU-specific kernels): tests use
    those, and tests/test_pinned_models.py checks them."""
    from editjudge.tools.make_tiny_editors import build_editor

    first = build_editor("flux-kontext", tmp_path / "a")
    second = build_editor("flux-kontext", tmp_path / "b")
    for rel in ["transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                "tokenizer/tokenizer.json", "tokenizer_2/tokenizer.json", "vae/diffusion_pytorch_model.safetensors"]:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_qwen_tokenizer_matches_the_edit_prompt_template(tiny_editors):
    """The pipelines cut 64 tokens of system prompt off the encoded prompt, as counted by Qwen's tokenizer."""
    from transformers import Qwen2Tokenizer

    from editjudge.tools.make_tiny_editors import QWEN_EDIT_PREFIX

    tokenizer = Qwen2Tokenizer.from_pretrained(tiny_editors["qwen-image-edit"] / "tokenizer")
    assert len(tokenizer(QWEN_EDIT_PREFIX)["input_ids"]) == 64
    assert tokenizer.convert_ids_to_tokens(tokenizer("<|image_pad|>")["input_ids"]) == ["<|image_pad|>"]


# ---------------------------------------------------------------------------------------------
# Editing


@pytest.mark.parametrize("name", ALL)
def test_edits_come_back_at_the_source_size(editor_factory, sources, name, monkeypatch):
    editor = editor_factory(name, batch_size=1 if name == "qwen-image-edit-plus" else 2)
    pipeline_outputs = []
    run = editor._run

    def spy(prompts, images, seeds):
        out = run(prompts, images, seeds)
        pipeline_outputs.extend((im.size, fed.size) for im, fed in zip(out, images))
        return out

    monkeypatch.setattr(editor, "_run", spy)
    out = editor.edit(_requests(sources[:2], [1, 2]))
    assert len(out) == 2
    # The pipeline itself produced the size it was fed (a multiple it accepts), not e.g. 1024x1024.
    assert len(pipeline_outputs) == 2
    assert all(produced == fed for produced, fed in pipeline_outputs), pipeline_outputs
    assert {fed for _, fed in pipeline_outputs} == {editor.pipeline_size((50, 37)), editor.pipeline_size((72, 90))}
    for image, src in zip(out, sources[:2]):
        assert isinstance(image, Image.Image), image
        with Image.open(src) as original:
            assert image.size == original.size and image.mode == "RGB"
            assert not np.array_equal(_pixels(image), _pixels(original.convert("RGB")))
    assert editor.batch_fallbacks == 0


def test_pipeline_sizes_are_rounded_multiples(editor_factory):
    assert editor_factory("instruct-pix2pix").pipeline_size((50, 37)) == (48, 40)
    assert editor_factory("flux-kontext").pipeline_size((50, 37)) == (48, 32)
    assert editor_factory("flux-kontext").pipeline_size((5, 90)) == (16, 96)
    # The tiny Qwen VAE downscales by 16 (the real one by 8): multiples of 32 here.
    assert editor_factory("qwen-image-edit", {"true_cfg_scale": 1.0}).pipeline_size((50, 37)) == (64, 32)


def test_size_params_fix_the_output_size(editor_factory, sources):
    [image] = editor_factory("flux-kontext", {"height": 32, "width": 48}).edit(_requests(sources[1:2], [3]))
    assert image.size == (48, 32)


@pytest.mark.parametrize("name", ["instruct-pix2pix", "flux-kontext", "qwen-image-edit"])
def test_seed_decides_the_edit(editor_factory, sources, name):
    editor = editor_factory(name, {"true_cfg_scale": 1.0} if name.startswith("qwen") else None)
    a, b, c = editor.edit([EditRequest("x", sources[0], "make it night", seed) for seed in (11, 11, 12)])
    # The same seed gives the same bytes, so any difference is the seed's doing; how much a random-weight
    # pipeline's output moves with its noise is a property of its weights, not of editjudge.
    assert np.array_equal(_pixels(a), _pixels(b))
    assert not np.array_equal(_pixels(a), _pixels(c))


@pytest.mark.parametrize("name", BATCHABLE)
def test_batched_edits_match_one_by_one(editor_factory, sources, name):
    """Batched and single edits agree to rounding, not bit for bit.

    CPU kernels (oneDNN convolutions, and matmuls with one row versus several, e.g. the timestep
    embedding MLPs) sum in a different order for a batch of 3 than for 1: the float outputs differ
    by ~1e-6, which flips a few 8-bit pixels by one level. Only batch_size 1 is bit-identical
    whatever the batch composition (see the diffusers_editor module docstring).
    """
    params = {"true_cfg_scale": 1.0} if name.startswith("qwen") else None
    n = 2 if name.startswith("qwen") else 3  # Qwen edits cost ~0.5 s each on CPU
    requests = _requests([sources[2]] * n, [5, 6, 7][:n])  # one size: a single batch
    batched = editor_factory(name, params, batch_size=n).edit(requests)
    single = editor_factory(name, params, batch_size=1)
    for request, together in zip(requests, batched):
        [alone] = single.edit([request])
        diff = np.abs(_pixels(together) - _pixels(alone))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (name, request.item_id, diff.max(), (diff > 0).mean())
    # Each item got its own prompt and noise, not its neighbour's: the two differ in more values than
    # batching's rounding flips (under 1%, above).
    assert (np.abs(_pixels(batched[0]) - _pixels(batched[1])) > 0).mean() >= 0.01


def test_single_item_batches_ignore_their_neighbours(editor_factory, sources):
    """batch_size 1: an item's edit is bit-identical whatever else is in the request list."""
    editor = editor_factory("flux-kontext", batch_size=1)
    requests = _requests(sources, [21, 22, 23])
    together = editor.edit(requests)
    reversed_order = editor.edit(requests[::-1])[::-1]
    for a, b in zip(together, reversed_order):
        assert np.array_equal(_pixels(a), _pixels(b))


def test_a_missing_source_fails_alone(editor_factory, sources, tmp_path):
    from editjudge.images import ImageLoadError

    editor = editor_factory("instruct-pix2pix")
    requests = [EditRequest("gone", tmp_path / "missing.png", "make it night", 1),
                EditRequest("here", sources[0], "make it night", 1)]
    gone, here = editor.edit(requests)
    assert isinstance(gone, ImageLoadError) and "missing.png" in str(gone)
    assert isinstance(here, Image.Image) and here.size == (50, 37)


def test_a_failing_batch_is_retried_item_by_item(editor_factory, sources, monkeypatch):
    editor = editor_factory("instruct-pix2pix", batch_size=2)
    real_call = type(editor.pipe).__call__
    calls = []

    def flaky(pipe, **kwargs):
        calls.append(list(kwargs["prompt"]))
        if "explode" in kwargs["prompt"]:
            raise RuntimeError("boom")
        return real_call(pipe, **kwargs)

    monkeypatch.setattr(type(editor.pipe), "__call__", flaky)
    before = editor.batch_fallbacks
    requests = [EditRequest("a", sources[0], "explode", 1), EditRequest("b", sources[0], "make it night", 1)]
    bad, good = editor.edit(requests)
    assert isinstance(bad, RuntimeError) and "boom" in str(bad)
    assert isinstance(good, Image.Image)
    assert calls == [["explode", "make it night"], ["explode"], ["make it night"]]
    assert editor.batch_fallbacks == before + 1


# ---------------------------------------------------------------------------------------------
# Config checks, without weights


@pytest.fixture
def index_only(tiny_editors, tmp_path):
    """A pipeline folder holding only model_index.json: any weight loading would fail."""

    def make(name: str, class_name: str | None = None) -> Path:
        folder = tmp_path / f"{name}-{class_name or 'as-built'}"
        folder.mkdir(exist_ok=True)
        index = json.loads((tiny_editors[name] / "model_index.json").read_text())
        if class_name:
            index["_class_name"] = class_name
        (folder / "model_index.json").write_text(json.dumps(index))
        return folder

    return make


def test_config_problems_accept_a_good_config_without_weights(index_only):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    folder = index_only("instruct-pix2pix")
    params = {"num_inference_steps": 4, "image_guidance_scale": 1.5, "guidance_scale": 7.0}
    assert DiffusersEditor.config_problems(str(folder), params, batch_size=4) == []
    assert DiffusersEditor.config_problems(str(index_only("flux-kontext")), {"_auto_resize": True}) == []


def test_config_problems_name_a_misspelt_param(index_only):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    [problem] = DiffusersEditor.config_problems(str(index_only("instruct-pix2pix")), {"image_guidance_scal": 1.5})
    assert problem.startswith("params.image_guidance_scal: ") and "did you mean image_guidance_scale or" in problem
    assert "StableDiffusionInstructPix2PixPipeline" in problem


def test_config_problems_reject_params_the_editor_sets(index_only):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    problems = DiffusersEditor.config_problems(str(index_only("flux-kontext")), {"generator": 1, "max_area": 64})
    assert len(problems) == 2
    assert problems[0].startswith("params.generator: set by the diffusers editor")
    assert problems[1].startswith("params.max_area: set by the diffusers editor")


def test_config_problems_name_a_missing_model(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    [problem] = DiffusersEditor.config_problems(str(tmp_path / "no-such-model"), {})
    assert problem.startswith("model_path: ") and "no-such-model does not exist" in problem
    empty = tmp_path / "empty"
    empty.mkdir()
    [problem] = DiffusersEditor.config_problems(str(empty), {})
    assert "model_index.json" in problem
    # Offline, a hub id is accepted only from the local Hugging Face cache.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    [problem] = DiffusersEditor.config_problems("editjudge-tests/not-a-cached-model", {})
    assert "Hugging Face cache" in problem and "HF_HUB_OFFLINE" in problem
    # Online, only model_index.json is fetched; a repo that cannot be read is named, and without a
    # network (as here) the one probe of editjudge.hub says so.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    [problem] = DiffusersEditor.config_problems("editjudge-tests/not-a-cached-model", {})
    assert (problem.startswith("model_path: cannot read editjudge-tests/not-a-cached-model/model_index.json")
            or "not-a-cached-model is not in the Hugging Face cache and there is no network" in problem), problem


def test_config_problems_reject_an_unknown_pipeline_class(index_only):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    [problem] = DiffusersEditor.config_problems(str(index_only("instruct-pix2pix", "NoSuchEditPipeline")), {})
    assert "'NoSuchEditPipeline'" in problem and "not a diffusers pipeline class" in problem
    [problem] = DiffusersEditor.config_problems(str(index_only("flux-kontext", "FluxPipeline")), {})
    assert "does not support" in problem and "FluxKontextPipeline" in problem


def test_config_problems_check_batch_size_and_size_params(index_only):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    [problem] = DiffusersEditor.config_problems(str(index_only("qwen-image-edit-plus")), {}, batch_size=2)
    assert "batch_size: 1" in problem
    [problem] = DiffusersEditor.config_problems(str(index_only("flux-kontext")), {"height": 64})
    assert problem.startswith("params.height/params.width")
    [problem] = DiffusersEditor.config_problems(str(index_only("flux-kontext")), {}, batch_size=0)
    assert problem.startswith("batch_size: must be a positive integer")


def test_editor_config_entries_are_checked_and_built(index_only, tiny_editors):
    """The registry path: editor_problems(EditorConfig) and build_editor(EditorConfig, device)."""
    from editjudge.config import EditorConfig
    from editjudge.models.editing import build_editor, editor_problems

    bad = EditorConfig(name="ip2p", type="diffusers", model_path=str(index_only("instruct-pix2pix")),
                       params={"image_guidance_scal": 1.5, "prompt": "x"})
    problems = editor_problems(bad, "editing.editors[0]")
    assert len(problems) == 2, problems
    assert problems[0].startswith("editing.editors[0].params.image_guidance_scal: not a parameter")
    assert problems[1].startswith("editing.editors[0].params.prompt: set by the diffusers editor")
    missing = EditorConfig(name="x", type="diffusers")
    assert editor_problems(missing, "e") == ["e.model_path: required for type 'diffusers'"]
    good = EditorConfig(name="ip2p", type="diffusers", model_path=str(tiny_editors["instruct-pix2pix"]),
                        params=FAST, batch_size=2, dtype="float32")
    assert editor_problems(good, "e") == []
    editor = build_editor(good, "cpu")
    assert editor.name == "ip2p" and editor.batch_size == 2 and editor.params == FAST
    editor.close()


def test_constructor_refuses_a_bad_config(index_only):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    with pytest.raises(ValueError, match="image_guidance_scal"):
        DiffusersEditor("ip2p", str(index_only("instruct-pix2pix")), params={"image_guidance_scal": 1.0})


def test_close_drops_the_pipeline(tiny_editors):
    from editjudge.models.editing.diffusers_editor import DiffusersEditor

    editor = DiffusersEditor("ip2p", str(tiny_editors["instruct-pix2pix"]), params=FAST)
    editor.close()
    assert editor.pipe is None
    with pytest.raises(RuntimeError, match="closed"):
        editor.edit([])
