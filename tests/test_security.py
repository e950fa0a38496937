"""Loading is safe by default: safetensors only, no remote code, no pickle, no unsafe YAML.

The hostile files here would write a marker file if anything executed them; each test checks the
load is refused (or goes on without them) and the marker never appears.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

SOURCES = [*sorted((ROOT / "src").rglob("*.py")), ROOT / "main.py", *sorted((ROOT / "bench").rglob("*.py"))]


class _Hostile:
    """Unpickling this runs ``Path(marker).write_text(...)``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle code ran"))


def _hostile_checkpoint(path: Path, marker: Path) -> None:
    torch.save({"weight": _Hostile(marker)}, path)


def test_no_unsafe_loading_calls_in_the_code():
    patterns = {
        r"\byaml\.load\(": "yaml.load (use yaml.safe_load)",
        r"\bimport pickle\b|\bpickle\.load": "pickle",
        r"\btorch\.load\(": "torch.load (weights are safetensors only)",
        r"trust_remote_code\s*=\s*True": "trust_remote_code=True",
        r"use_safetensors\s*=\s*False": "use_safetensors=False",
        r"(?<![.\w])(eval|exec|compile)\(": "eval/exec/compile",
    }
    found = [f"{path.relative_to(ROOT)}:{n}: {what}" for path in SOURCES
             for n, line in enumerate(path.read_text().splitlines(), 1)
             for pattern, what in patterns.items() if re.search(pattern, line)]
    assert found == []
    assert len(SOURCES) > 20  # the scan did look at the code


def test_the_judge_refuses_pickled_weights(tmp_path, judge_path):
    from editjudge.models.reward import Qwen3VLRewardModel

    folder = tmp_path / "judge"
    shutil.copytree(judge_path, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned-judge"
    _hostile_checkpoint(folder / "pytorch_model.bin", marker)
    with pytest.raises((OSError, ValueError), match="safetensors"):
        Qwen3VLRewardModel(str(folder), show_progress=False)
    assert not marker.exists()


def test_an_editor_refuses_pickled_weights(tmp_path, tiny_editors):
    from editjudge.config import EditorConfig
    from editjudge.models.editing import build_editor

    folder = tmp_path / "ip2p"
    shutil.copytree(tiny_editors["instruct-pix2pix"], folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "pwned-editor"
    _hostile_checkpoint(folder / "unet" / "diffusion_pytorch_model.bin", marker)
    config = EditorConfig(name="ip2p", type="diffusers", model_path=str(folder), dtype="float32")
    with pytest.raises((OSError, ValueError, EnvironmentError), match="safetensors"):
        build_editor(config, "cpu")
    assert not marker.exists()


def test_remote_code_in_a_model_folder_never_runs_unless_asked(tmp_path, judge_path):
    """A config.json whose auto_map points at a Python file beside it: without trust_remote_code
    the file is never imported (transformers uses its own Qwen3-VL class or refuses)."""
    from editjudge.models.reward import Qwen3VLRewardModel

    folder = tmp_path / "judge"
    shutil.copytree(judge_path, folder)
    marker = tmp_path / "pwned-remote-code"
    (folder / "modeling_evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "modeling_evil.Evil", "AutoConfig": "modeling_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        Qwen3VLRewardModel(str(folder), show_progress=False)
    except (OSError, ValueError):
        pass  # refusing is as good as ignoring
    assert not marker.exists()
