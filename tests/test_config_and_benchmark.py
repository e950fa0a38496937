import json
import subprocess
import sys

import pytest
import yaml

from editjudge.benchmark import BenchmarkError, load_benchmark
from editjudge.config import ConfigError, load_config
from tests.conftest import ROOT

SAMPLE = ROOT / "benchmark_data" / "sample" / "annotations.jsonl"


def write_config(tmp_path, data) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def base_config(model_path: str) -> dict:
    return {
        "benchmark": {"path": str(SAMPLE)},
        "reward_model": {"type": "qwen3_vl", "params": {"model_path": model_path}},
        "output_dir": "out",
    }


def test_sample_benchmark_is_as_documented():
    items = load_benchmark(SAMPLE)
    assert len(items) >= 24
    assert len({i.category for i in items}) >= 6
    assert len({i.id for i in items}) == len(items)
    assert all(i.image.is_file() for i in items)
    assert {i.language for i in items} == {"en", "zh"}


def test_benchmark_filters_and_limit():
    items = load_benchmark(SAMPLE, categories=["text", "style"], limit=5)
    assert len(items) == 5 and {i.category for i in items} <= {"text", "style"}
    with pytest.raises(BenchmarkError, match=r"categories \['nope'\] not in the benchmark"):
        load_benchmark(SAMPLE, categories=["nope"])


def test_bad_annotation_lines_name_file_and_line(tmp_path):
    path = tmp_path / "annotations.jsonl"
    good = {"id": "a", "category": "c", "instruction": "i", "image": "x.png"}
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(BenchmarkError, match=r"annotations.jsonl:2: not valid JSON"):
        load_benchmark(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(BenchmarkError, match=r":2: duplicate id 'a'"):
        load_benchmark(path)
    path.write_text(json.dumps({"id": "a", "category": "c"}) + "\n")
    with pytest.raises(BenchmarkError, match=r":1: missing or non-string field\(s\) \['instruction', 'image'\]"):
        load_benchmark(path)


def test_config_reports_every_problem_at_once(tmp_path):
    data = base_config(str(tmp_path / "no-such-model"))
    data["benchmark"]["limit"] = "ten"
    data["benchmark"]["colour"] = "red"
    data["seed"] = 1.5
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, data))
    problems = info.value.problems
    assert any("benchmark.limit: expected" in p for p in problems)
    assert any("benchmark.colour: unknown key" in p for p in problems)
    assert any("seed: expected int" in p for p in problems)


def test_config_value_checks_name_the_key(tmp_path):
    data = base_config(str(tmp_path / "no-such-model"))
    data["reward_model"]["params"]["batchsize"] = 4
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, data))
    text = str(info.value)
    assert "reward_model.params.batchsize: unknown key; did you mean 'batch_size'?" in text
    assert "does not exist" in text


def test_overrides_take_precedence(tmp_path, judge_path):
    path = write_config(tmp_path, base_config(judge_path))
    config = load_config(path, ["reward_model.params.batch_size=2", "benchmark.limit=3", "output_dir=elsewhere"])
    assert config.reward_model.params["batch_size"] == 2
    assert config.benchmark.limit == 3 and config.output_dir == "elsewhere"


def test_yaml_configs_in_the_repo_are_valid(monkeypatch):
    # Offline (as in CI) the hub editors cannot be checked: that must be the only problem reported.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in ("config.yaml", "config_multi_gpu.yaml"):
        with pytest.raises(ConfigError) as info:
            load_config(ROOT / name)
        # ... and, on a machine with fewer GPUs than the config names, those devices.
        problems = [p for p in info.value.problems if "does not exist (this machine has" not in p]
        assert problems and all("HF_HUB_OFFLINE is set" in p for p in problems), info.value
        data = yaml.safe_load((ROOT / name).read_text())
        assert data["reward_model"]["params"]["use_batch_inference"] is True
        assert isinstance(data["reward_model"]["params"]["batch_size"], int)
        assert len(data["editing"]["editors"]) + 1 == len(problems)  # the editors and the judge


def test_main_rejects_a_bad_config_with_status_2(tmp_path):
    data = {"benchmark": {"path": str(SAMPLE)}, "reward_model": {"params": {}}, "extra": 1}
    result = subprocess.run([sys.executable, "main.py", "--config", write_config(tmp_path, data)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "extra: unknown key" in result.stderr and "model_path: required" in result.stderr


def test_batch_size_flag_takes_a_number_or_auto(judge_path, tmp_path):
    from editjudge import cli as main

    path = write_config(tmp_path, base_config(judge_path))
    for flag, expected in (("auto", "auto"), ("3", 3)):
        args = main.build_parser().parse_args(["--config", path, "--batch-size", flag])
        assert load_config(path, main.overrides_from_args(args)).reward_model.params["batch_size"] == expected
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["--config", path, "--batch-size", "0"])
