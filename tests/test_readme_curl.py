"""The README's curl example of the wire format runs as shown, with real-sized images (issue 21).

The old example put the base64 images on curl's command line, which fails with "Argument list too
long" once an image passes about 96 KB. This runs the README's own code block with bash against a
real ``editjudge serve`` (stopped by PID) on images of over 200 KB.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.test_server import Server


def readme_wire_format_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The wire format (version 1)", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _noise_png(path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(400, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_the_example_sends_the_body_from_a_file():
    block = readme_wire_format_example()
    assert "--data-binary @body.json" in block and "http://127.0.0.1:8000/v1/score" in block
    assert '"$IMG"' not in block and " -d " not in block  # no image on the command line


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_readme_curl_example_scores_a_400x400_image(tmp_path, judge_path):
    work = tmp_path / "client"
    work.mkdir()
    _noise_png(work / "edited.png", 1)
    _noise_png(work / "source.png", 2)
    assert (work / "edited.png").stat().st_size > 200_000  # far past what fits in an argument
    server = Server(tmp_path, {"model_path": judge_path, "batch_size": 2, "max_new_tokens": 12}, [])
    try:
        script = readme_wire_format_example().replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        # -w: curl's status code on a line of its own after the body
        script = script.replace("curl -s ", "curl -s -w '\\n%{http_code}' ")
        result = subprocess.run(["bash", "-e", "-c", script], cwd=work, capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, PATH=os.environ.get("PATH", "")))
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200", result.stdout[-2000:]
    answer = json.loads(body)
    assert answer["version"] == 1
    (item,) = answer["results"]
    assert item["id"] == "a" and item["error"] is None and isinstance(item["score"], float)
    assert 0.0 <= item["score"] <= 10.0
    assert (work / "body.json").stat().st_size > 2 * 200_000 * 4 / 3  # both images went, as base64
