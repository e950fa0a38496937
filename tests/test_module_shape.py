"""The shape of the pipeline's, the configuration's and the reward, protocol and trust packages' modules:
each under 500 lines, and ``checks`` free of the pipeline (it reads scores through ``merge``, so the two do
not import each other)."""

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


SPLIT_PACKAGES = ("models/reward", "protocols", "trust")
PACKAGE_MODULES = sorted(path.relative_to(ROOT / "src").as_posix()
                         for package in SPLIT_PACKAGES for path in (ROOT / "src" / package).rglob("*.py"))


def test_the_package_modules_are_found():
    """An empty or mistyped package list would pass the size test below without checking anything."""
    for package in SPLIT_PACKAGES:
        assert [m for m in PACKAGE_MODULES if m.startswith(package + "/") and not m.endswith("__init__.py")], package
    assert "models/reward/openai_judge.py" in PACKAGE_MODULES


@pytest.mark.parametrize("name", PACKAGE_MODULES)
def test_the_reward_protocol_and_trust_modules_stay_under_500_lines(name):
    lines = len((ROOT / "src" / name).read_text(encoding="utf-8").splitlines())
    assert lines < MAX_LINES, f"src/{name} has {lines} lines: split it"


def test_the_api_judge_still_offers_what_it_split_off():
    """``openai_request`` builds the API judge's requests; ``editjudge.models.reward.openai_judge`` re-exports
    its names, the same objects, and the judge's request methods are the mixin's."""
    import editjudge.models.reward.openai_judge as judge
    import editjudge.models.reward.openai_request as request

    for name in ("IMAGE_FORMATS", "PATCH_FACTOR", "MAX_TOP_LOGPROBS", "smart_resize", "answer_schema"):
        assert getattr(judge, name) is getattr(request, name), name
    assert judge._without_images is request.without_images
    for method in ("_image_part", "_messages", "_sampling", "_generate_body", "_logits_body"):
        assert getattr(judge.OpenAIRewardModel, method) is getattr(request.ChatRequests, method), method


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
