"""Configuration mistakes that need no torch come right after the plan, before torch or diffusers load (issue 21).

Each test runs ``python main.py --config BAD`` through a small script that records, after the command
has exited, which heavy modules the process had imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, SAMPLE

HEAVY = ("torch", "diffusers", "transformers")
# main.py as `python main.py ARGS` runs it; then which heavy modules this process imported.
SPY = f"""
import runpy, sys
sys.argv = ["main.py"] + sys.argv[1:]
try:
    runpy.run_path({str(ROOT / "main.py")!r}, run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("HEAVY " + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def _config(tmp_path: Path, **changes) -> str:
    images = tmp_path / "outputs"
    images.mkdir(exist_ok=True)
    data = {
        "benchmark": {"path": str(SAMPLE)},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "bright", "type": "precomputed", "image_dir": str(images)},
            # a diffusers editor whose files are missing: only the model checks (which import diffusers) see that
            {"name": "ip2p", "type": "diffusers", "model_path": str(tmp_path / "no-such-pipeline")}]},
        "reward_model": {"type": "qwen3_vl", "devices": ["cpu"],
                         "params": {"model_path": str(tmp_path / "no-such-judge"), "batch_size": 2}},
        "output_dir": str(tmp_path / "out"),
    }
    for dotted, value in changes.items():
        node = data
        *keys, last = dotted.split("__")
        for key in keys:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _run(config: str, *args: str) -> tuple[int, str, list[str]]:
    result = subprocess.run([sys.executable, "-c", SPY, "--config", config, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    *lines, last = result.stderr.rstrip("\n").splitlines()
    assert last.startswith("HEAVY "), result.stderr
    return result.returncode, "\n".join(lines), [m for m in last[len("HEAVY "):].split(",") if m]


def test_a_judge_batch_size_of_zero_is_reported_after_the_plan_without_importing_torch(tmp_path):
    rc, text, heavy = _run(_config(tmp_path), "--set", "reward_model.params.batch_size=0")
    assert rc == 2, text
    assert heavy == [], text
    assert text.index("editjudge plan (") < text.index("invalid configuration")
    assert "reward_model.params.batch_size must be 'auto' or a positive integer, got 0" in text
    # the model checks did not run (they import diffusers): the missing pipeline and judge are not listed yet
    assert "no-such-pipeline" not in text.split("invalid configuration")[1], text
    assert "the models and the devices are checked once these are fixed" in text


def test_a_missing_annotations_file_or_image_folder_is_reported_without_importing_torch(tmp_path):
    empty = tmp_path / "empty-benchmark"
    empty.mkdir()
    config = _config(tmp_path, benchmark__path=str(empty),
                     editing__editors__0__image_dir=str(tmp_path / "missing"), editing__editors__1__batch_size=0)
    rc, text, heavy = _run(config)
    assert rc == 2 and heavy == [], text
    problems = text.split("invalid configuration")[1]
    assert f"benchmark.path: {empty / 'annotations.jsonl'}: no such annotations file" in problems
    assert f"editing.editors[0].image_dir: {tmp_path / 'missing'} is not a folder" in problems
    assert "editing.editors[1].batch_size: must be at least 1, got 0" in problems
    assert "output     " in text and "not read (the configuration has problems" in text


def test_the_model_checks_still_run_once_the_light_ones_pass(tmp_path):
    rc, text, heavy = _run(_config(tmp_path), "--stage", "report")
    assert rc == 2, text
    assert "checking the models and devices" in text
    assert "editing.editors[1].model_path" in text and "no-such-pipeline" in text, text
    assert "reward_model.params.model_path" in text and "no-such-judge" in text, text


def test_a_config_that_cannot_be_built_reports_its_problems_without_a_plan(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"benchmark": {"path": str(SAMPLE)}}))
    rc, text, heavy = _run(str(path))
    assert rc == 2 and heavy == [], text
    assert "reward_model: required" in text and "editjudge plan" not in text
