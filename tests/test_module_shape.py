"""The shape of the pipeline's and the configuration's modules: each under 500 lines, and ``checks`` free
of the pipeline (it reads scores through ``merge``, so the two do not import each other)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

MAX_LINES = 500


@pytest.mark.parametrize("name", ["pipeline", "stage_common", "score_settings", "edit_stage", "score_stage", "merge"])
def test_the_pipeline_modules_stay_under_500_lines(name):
    lines = len((ROOT / "src" / f"{name}.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_LINES, f"src/{name}.py has {lines} lines: split it"


@pytest.mark.parametrize("name", ["config", "config_reward", "config_types"])
def test_the_config_modules_stay_under_500_lines(name):
    lines = len((ROOT / "src" / f"{name}.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_LINES, f"src/{name}.py has {lines} lines: split it"


def test_config_still_offers_the_reward_model_checks_it_split_off():
    """``config_reward`` holds the reward_model section's checks; ``editjudge.config`` re-exports them, the
    same objects, so that the modules and tests that import them from there keep working."""
    import editjudge.config as config
    import editjudge.config_reward as config_reward

    for name in ("judge_device_spec", "judge_group_problems", "reward_model_problems", "vllm_layout_problems",
                 "vllm_servers"):
        assert getattr(config, name) is getattr(config_reward, name), name


def test_importing_checks_does_not_import_the_pipeline():
    code = ("import main, editjudge.checks, sys; "  # main: this checkout's src/ is editjudge
            "print(editjudge.__file__); print('editjudge.pipeline' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path, imported = done.stdout.split()
    assert path == str(ROOT / "src" / "__init__.py")
    assert imported == "False"


def test_checks_imports_no_pipeline_module_even_inside_a_function():
    """A function-level import hides the cycle from the test above without removing it."""
    tree = ast.parse((ROOT / "src" / "checks.py").read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert "merge" in modules
    assert not [m for m in modules if m.split(".")[-1] == "pipeline"], modules
