"""Shared fixtures: the tiny local models, built once and cached under .cache/ (or $EDITJUDGE_CACHE)."""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import pytest

import main  # noqa: F401  (the checkout's src/ becomes the editjudge package, whatever is installed)

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDITJUDGE_CACHE", ROOT / ".cache" / "tiny-models"))


SAMPLE = ROOT / "benchmark_data" / "sample" / "annotations.jsonl"
MISSING = "remove_object_001"  # the precomputed_dir editor has no output for this item


def shared_data(name: str) -> Path:
    """A public data set under the workplace's ``shared/data/`` (each folder says its source and license):
    ``$EDITJUDGE_SHARED_DATA``, else ``shared/data`` beside the checkout, else ``/work/shared/data`` (a
    clean clone elsewhere on this machine finds it there too)."""
    candidates = [Path(os.environ["EDITJUDGE_SHARED_DATA"])] if os.environ.get("EDITJUDGE_SHARED_DATA") else []
    candidates += [ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    return next((c / name for c in candidates if (c / name).is_dir()), candidates[0] / name)


@functools.cache
def tiny_editor(name: str) -> str:
    """The folder of one tiny diffusers pipeline (instruct-pix2pix, flux-kontext, ...), built on first use."""
    from editjudge.tools.make_tiny_editors import ensure_tiny_editors

    return str(ensure_tiny_editors(CACHE)[name])


@pytest.fixture(scope="session")
def precomputed_dir(tmp_path_factory) -> Path:
    """Outputs of a pretend editor: each sample source with a different brightness; one item missing, one resized."""
    from PIL import Image, ImageEnhance

    from editjudge.benchmark import load_benchmark

    folder = tmp_path_factory.mktemp("precomputed")
    for i, item in enumerate(load_benchmark(SAMPLE)):
        if item.id == MISSING:
            continue
        image = ImageEnhance.Brightness(Image.open(item.image).convert("RGB")).enhance(0.4 + 0.3 * (i % 5))
        if i == 1:
            image = image.resize((40, 30))
        image.save(folder / f"{item.id}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    from editjudge.tools.make_tiny_models import ensure_tiny_models

    return ensure_tiny_models(CACHE)


@pytest.fixture(scope="session")
def tiny_editors() -> dict[str, Path]:
    """The tiny random-weight diffusers edit pipelines, by name (instruct-pix2pix, flux-kontext, ...)."""
    from editjudge.tools.make_tiny_editors import ensure_tiny_editors

    return ensure_tiny_editors(CACHE)


@pytest.fixture(scope="session")
def judge_path(tiny_models) -> str:
    return str(tiny_models["judge"])


@pytest.fixture(scope="session")
def judge(judge_path):
    from editjudge.models.reward import Qwen3VLRewardModel

    return Qwen3VLRewardModel(judge_path, batch_size=4, max_new_tokens=12, show_progress=False)


@pytest.fixture(scope="session")
def logits_judge(judge_path):
    from editjudge.models.reward import Qwen3VLRewardModel

    return Qwen3VLRewardModel(judge_path, batch_size=4, score_mode="logits", show_progress=False)


@pytest.fixture
def graded_images():
    """Two synthetic images per brightness level 0-10, with the level the judge should track."""
    from editjudge.tools.make_tiny_models import brightness_score, synthetic_image

    rng = random.Random(1234)
    images = [synthetic_image(rng, level=level) for level in range(11) for _ in range(2)]
    return images, [brightness_score(im) for im in images]
