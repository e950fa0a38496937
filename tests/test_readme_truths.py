"""What the README and the bundled configs say is what the code does (issue 21)."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import yaml
from PIL import Image

from tests.conftest import ROOT, SAMPLE

README = (ROOT / "README.md").read_text(encoding="utf-8")
DEMO = (ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8")


def test_the_random_instruct_pix2pix_makes_coloured_noise_of_middling_brightness_as_described(tiny_editors, tmp_path):
    from editjudge.benchmark import load_benchmark
    from editjudge.config import EditorConfig
    from editjudge.models.editing import EditRequest, build_editor

    entry = next(e for e in yaml.safe_load(DEMO)["editing"]["editors"] if e["name"] == "tiny-instruct-pix2pix")
    entry["model_path"] = str(tiny_editors["instruct-pix2pix"])  # the same tiny pipeline, wherever it is cached
    editor = build_editor(EditorConfig(**entry), "cpu")
    try:
        item = load_benchmark(SAMPLE)[0]
        (image,) = editor.edit([EditRequest(item.id, item.image, item.instruction, 0)])
    finally:
        editor.close()
    assert isinstance(image, Image.Image), image
    saturation = np.asarray(image.convert("HSV"))[..., 1].mean() / 255
    luminance = np.asarray(image.convert("L")).mean() / 255
    # Measured on the demo: saturation about 0.39, luminance about 0.52. Grey noise would have saturation near 0.
    assert saturation > 0.2, saturation
    assert 0.4 < luminance < 0.65, luminance
    row = next(line for line in README.splitlines() if line.startswith("| `tiny-instruct-pix2pix` |"))
    assert "coloured noise" in row and "grey" not in row and "~52%" in row
    assert "coloured noise" in DEMO and "grey" not in DEMO and "about 52%" in DEMO


def test_the_readme_says_editjudge_is_on_path_only_inside_the_venv():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"editjudge": "editjudge.cli:main"}  # a console script: it lives in the venv's bin/
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^VENV \?= \.venv$", makefile, re.M)  # where `make` installs it
    text = " ".join(README.split())
    assert "on your PATH only inside that virtual environment" in text
    assert "source .venv/bin/activate" in text and ".venv/bin/editjudge --config" in text


def test_config_comments_about_relative_paths_say_what_load_config_does(tmp_path, monkeypatch):
    from editjudge.config import read_config

    files = [ROOT / "config.yaml", ROOT / "config_multi_gpu.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]
    for path in files:
        comments = " ".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))
        if "relative" in comments.lower():
            assert "relative to this file's folder" in comments, path
            assert "relative to where you run main.py" not in comments, path
    monkeypatch.chdir(tmp_path)  # somewhere else: the config file's folder decides, not this one
    config, problems = read_config(ROOT / "config.yaml")
    assert config is not None, problems
    assert config.benchmark.path == str(ROOT / "benchmark_data" / "sample" / "annotations.jsonl")
    assert config.output_dir.startswith(str(ROOT) + "/")
