"""One judge, one path: the job and `editjudge serve` build the judge the same way (reward.judge.build_judge).

One configuration file, scored by the job and by the reward server through RewardClient, gives the same
records (score, sub-scores, raw output, error, compared as they are): with GEdit-Bench's official VIEScore
prompts read from a local folder (the server used to judge with editjudge's own wording while saying
`viescore`), and with the judge on a device group (the server used to crash on one), with a rubric the tiny
judge answers (numbers compared) and one it does not (errors compared).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from editjudge.models.reward.viescore_files import RUBRIC_NAME
from tests.conftest import SAMPLE
from tests.test_first_hour import fake_viescore, main_py
from tests.test_server import Server


def _config(tmp_path: Path, judge_path: str, precomputed_dir: Path, devices, **params) -> Path:
    data = {
        "benchmark": {"path": str(SAMPLE), "limit": 3},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "bright", "type": "precomputed", "image_dir": str(precomputed_dir)}]},
        "reward_model": {"type": "qwen3_vl", "devices": devices, "params": {
            "model_path": judge_path, "dtype": "float32", "batch_size": 2, "max_new_tokens": 24, **params}},
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _job_and_server(tmp_path: Path, config: Path) -> tuple[list[dict], list[dict], dict]:
    """The job's scored records, the server's answers for the same items, and the server's /health."""
    from editjudge.benchmark import load_benchmark
    from editjudge.client import RewardClient

    result = main_py(str(config))
    # 1 is a run where every pair failed: whether the tiny judge answers a prompt it was never trained on
    # (the stand-in official text) is not the point; that both doors give the same records is.
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr[-3000:]
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    scored = [r for r in records if r["failed_stage"] in (None, "score")]
    assert len(scored) == 3
    items = {item.id: item for item in load_benchmark(SAMPLE)}
    server = Server(tmp_path, {}, [], config=config)
    try:
        client = RewardClient(server.url)
        answer = client.score_payload(client.build_payload(
            [out / r["image"] for r in scored], [items[r["item_id"]].image for r in scored],
            [items[r["item_id"]].instruction for r in scored]))
        health = client.health()
    finally:
        server.stop()
    answer["results"] = [dict(r, rubric=answer["rubric"]) for r in answer["results"]]
    return scored, answer["results"], health


@pytest.mark.parametrize("rubric, devices", [("official", ["cpu"]), ("official", [["cpu"]]), ("simple", [["cpu"]])],
                         ids=["official-device", "official-device-group", "simple-device-group"])
def test_the_job_and_the_server_give_the_same_records(rubric, devices, tmp_path, judge_path, precomputed_dir):
    if rubric == "official":
        params = {"rubric": "viescore", "viescore_prompts_dir": str(fake_viescore(tmp_path / "viescore"))}
    else:
        params = {"rubric": rubric}
    config = _config(tmp_path, judge_path, precomputed_dir, devices, **params)
    scored, served, health = _job_and_server(tmp_path, config)
    name = RUBRIC_NAME if rubric == "official" else rubric
    assert health["rubric"] == name and all(r["rubric"] == name for r in served)
    assert health["devices"] == ["cpu"]
    if rubric == "simple":  # the tiny judge answers its own prompt: the scores compared are numbers
        assert all(isinstance(r["score"], float) for r in scored)
    else:  # it does not answer the stand-in official text with the official fields: errors compared
        assert all(r["error"] and r["raw_output"] for r in scored)
    # A simple-rubric record has no sub_scores key where the server's answer says {} (schema.py): the same.
    scored = [dict(r, sub_scores=r.get("sub_scores", {})) for r in scored]
    fields = ("score", "sub_scores", "raw_output", "error")
    assert [{k: r[k] for k in fields} for r in served] == [{k: r[k] for k in fields} for r in scored]
