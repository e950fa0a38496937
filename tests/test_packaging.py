"""editjudge as a package: installs as ``editjudge`` (no top-level ``src``), runs as a console command and
with ``python -m``, and a config file's relative paths are relative to that file's folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from editjudge.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A real (non-editable) install of this checkout into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    shutil.copytree(ROOT, build / "editjudge", ignore=shutil.ignore_patterns(
        ".venv*", ".cache", ".git", "outputs", "*.egg-info", "build", "__pycache__", "bench_results"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--target", str(target), str(build / "editjudge")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def test_the_package_installs_as_editjudge_and_no_src_module(installed):
    assert (installed / "editjudge" / "models" / "reward" / "qwen3_vl.py").is_file()
    assert (installed / "editjudge" / "__main__.py").is_file()
    manifest = json.loads((installed / "editjudge" / "tools" / "pinned" / "manifest.json").read_text())
    for spec in manifest["models"].values():  # the pinned tiny models travel with the package
        assert all((installed / "editjudge" / "tools" / "pinned" / spec["path"] / rel).is_file() for rel in spec["files"])
    assert not (installed / "src").exists()
    assert [p.name for p in installed.iterdir() if p.suffix == ".py"] == []  # nothing else at the top level


def test_import_from_a_project_that_has_its_own_src_package(installed, tmp_path):
    # A research repo with its own src/models/: `import src.models...` there must keep meaning that repo's code.
    (tmp_path / "src" / "models").mkdir(parents=True)
    (tmp_path / "src" / "__init__.py").write_text("")
    (tmp_path / "src" / "models" / "__init__.py").write_text("MINE = 'theirs'\n")
    code = ("import editjudge, src.models\n"
            "from editjudge import Qwen3VLRewardModel\n"
            "from editjudge.models.reward import ScoreResult, get_reward_model_class\n"
            "assert get_reward_model_class('qwen3_vl') is Qwen3VLRewardModel\n"
            "print(editjudge.__file__); print(src.models.MINE); print(Qwen3VLRewardModel.__module__)\n")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    where, mine, module = result.stdout.split()
    assert Path(where).is_relative_to(installed)
    assert mine == "theirs"
    assert module == "editjudge.models.reward.qwen3_vl"


def _demo_config(tmp_path: Path, judge: Path) -> Path:
    """The demo's config in a folder of its own, with relative paths, scoring a precomputed editor."""
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "benchmark_data" / "sample", tmp_path / "project" / "data")
    (tmp_path / "project" / "judge").symlink_to(judge, target_is_directory=True)
    outputs = tmp_path / "project" / "made"
    outputs.mkdir()
    for line in (tmp_path / "project" / "data" / "annotations.jsonl").read_text().splitlines()[:3]:
        item = json.loads(line)
        shutil.copy(tmp_path / "project" / "data" / item["image"], outputs / f"{item['id']}{Path(item['image']).suffix}")
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data["benchmark"]["path"] = "../data/annotations.jsonl"
    data["benchmark"]["limit"] = 3
    data["editing"]["editors"] = [{"name": "copy", "type": "precomputed", "image_dir": "../made"}]
    data["reward_model"]["params"]["model_path"] = "../judge"
    data["output_dir"] = "../out"
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_paths_in_a_config_are_relative_to_its_folder(tmp_path, tiny_models, monkeypatch):
    config_path = _demo_config(tmp_path, tiny_models["judge"])
    monkeypatch.chdir(tmp_path)  # anywhere but the config's folder
    config = load_config(config_path, ["benchmark.image_cache=cache-here"])
    project = (tmp_path / "project").resolve()
    assert Path(config.benchmark.path) == project / "data" / "annotations.jsonl"  # normalised, not configs/../
    assert Path(config.output_dir).resolve() == project / "out"
    assert Path(config.editing.editors[0].image_dir).resolve() == project / "made"
    assert Path(config.reward_model.params["model_path"]).resolve() == Path(tiny_models["judge"]).resolve()
    assert config.benchmark.image_cache == "cache-here"  # --set values are relative to where the command runs
    data = yaml.safe_load(config_path.read_text())
    data["reward_model"] = {"type": "openai", "params": {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                                         "cache_dir": "../answers"}}
    from editjudge.config import resolve_relative_paths
    assert Path(resolve_relative_paths(data, config_path.parent)["reward_model"]["params"]["cache_dir"]).resolve() \
        == project / "answers"
    hub = load_config(config_path, ["reward_model.params.model_path=Qwen/Qwen3-VL-8B-Instruct"], models=False)
    assert hub.reward_model.params["model_path"] == "Qwen/Qwen3-VL-8B-Instruct"  # a hub id stays a hub id


@pytest.mark.parametrize("how", ["console", "module"])
def test_the_console_command_and_python_m_run_the_demo_config(how, tmp_path, tiny_models):
    config_path = _demo_config(tmp_path, tiny_models["judge"])
    command = ([str(Path(sys.executable).with_name("editjudge"))] if how == "console"
               else [sys.executable, "-m", "editjudge"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the installed editjudge (make test installs this checkout)
    result = subprocess.run([*command, "--config", str(config_path)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = [json.loads(line) for line in (tmp_path / "project" / "out" / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 3 and all(r["score"] is not None for r in scores)
    assert "summary.json" in result.stdout and (tmp_path / "project" / "out" / "report.html").is_file()


def test_reports_without_matplotlib_skip_only_the_chart(tmp_path, monkeypatch):
    from editjudge.report import write_reports

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError, as when not installed
    records = [{"item_id": f"i{k}", "category": "color", "editor": "e", "score": float(k), "error": None,
                "failed_stage": None} for k in range(3)]
    paths = write_reports(tmp_path, records, [])
    assert "scores_by_category.png" not in paths and not (tmp_path / "scores_by_category.png").exists()
    assert {"summary.json", "summary.csv", "report.md", "report.html"} <= set(paths)
    assert "no chart: matplotlib is not installed" in (tmp_path / "report.html").read_text()


def test_every_subpackage_of_src_is_installed():
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(("editjudge", *p.parent.relative_to(ROOT / "src").parts))
             for p in (ROOT / "src").rglob("__init__.py")}
    assert found == declared
