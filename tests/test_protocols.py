"""Benchmarks' own scoring protocols (editjudge.protocols): ImgEdit Basic reproduced end to end.

The expected figures are ImgEdit's rules (PKU-YuanGroup/ImgEdit @ 547185d12c08267a862b94248576e1746e479937,
Benchmark/Basic), restated here in our own code:
- step1_get_avgscore.py: an item's score is the mean of the integers on the answer's lines that are
  "<text without ': '>: <digits>" once stripped, rounded to 2; no such line: the item has no score;
- step2_typescore.py: per edit type, round(mean of the item scores, 2);
- the leaderboard's Overall: the mean of the type scores (rounded to 2 here).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editjudge.config import load_config, read_config
from editjudge.models.reward.results import ScoreResult
from editjudge.protocols.base import Ask, ItemProblem, ItemResult
from editjudge.protocols.scoring import score_protocol_items
from editjudge.protocols.imgedit import ImgEditBasic, item_score, line_scores, overall, type_scores
from tests.conftest import ROOT
from tests.protocol_fixtures import (ITEMS, MODEL, NO_EDIT, FakeChat, answer_for, standin_benchmark,
                                     standin_checkout)

STEP_LINE = re.compile(r"((?:(?!: ).)*): ([0-9]+)")


def upstream_item(answer: str) -> float | None:
    values = [int(m.group(2)) for m in map(STEP_LINE.fullmatch, (line.strip() for line in answer.splitlines())) if m]
    return round(sum(values) / len(values), 2) if values else None


def upstream_types(scores: dict[str, float]) -> dict[str, float]:
    grouped: dict[str, list[float]] = {}
    for key, value in scores.items():
        grouped.setdefault(ITEMS[key][0], []).append(value)
    return {kind: round(sum(v) / len(v), 2) for kind, v in grouped.items()}


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def data_url_bytes(part: dict) -> bytes:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.split(",", 1)[1])


# ---------------------------------------------------------------------------------- the rules, by hand


def test_step1_reads_name_number_lines_only():
    answer = "Brief reasoning: ok: 3\nA: 4\n  B: 5 \nC:3\nD: 2 of 5\nE: x\nF: 1"
    assert line_scores(answer) == [4, 5, 1]
    assert item_score(answer) == 3.33  # (4 + 5 + 1) / 3, rounded to 2
    assert item_score("no score here\nA: -1\nB: 2.5") is None
    assert item_score(": 5") == 5.0  # an empty name still splits in two parts
    with pytest.raises(ValueError, match="isdigit"):  # upstream's int() stops on a superscript digit
        line_scores("A: \u00b2")


def test_step2_type_means_and_the_overall_mean_of_types():
    scores = {"1": 1.0, "2": 3.33, "3": 5.0, "4": 2.67}
    by_type = type_scores(scores, {"1": "add", "2": "add", "3": "remove", "4": "extract", "5": "add"})
    assert by_type == {"add": 2.17, "remove": 5.0, "extract": 2.67}  # (1 + 3.33) / 2 = 2.165 -> 2.17
    assert overall(by_type) == 3.28  # (2.17 + 5 + 2.67) / 3 = 3.28
    assert overall({}) is None


# ---------------------------------------------------------------------------------- the scoring path


class TwoAsks:
    """A protocol of two requests per item (as RISEBench and KRIS-Bench make): "judge" with the source shown
    first, "look" with the edit alone; its score is the "judge" answer's number plus the "look" answer's."""

    name, version = "two", "1"

    def asks(self, item, edited):
        if item.category == "odd":
            raise ItemProblem("no prompt for odd")
        return [Ask("judge", f"judge {item.instruction}", edited, first_image=item.image),
                Ask("look", f"look {item.instruction}", edited, system_prompt="be brief")]

    def item_result(self, item, answers):
        if answers["look"] == "boom":
            raise ValueError("cannot read boom")
        if answers["judge"] is None:
            return ItemResult(None, error="no judge answer")
        return ItemResult(float(answers["judge"]) + float(answers["look"] or 0), {"judge": float(answers["judge"])})


class TableJudge:
    """Answers each user prompt from a table (a missing entry: a failed request); records each call."""

    def __init__(self, table: dict):
        self.table, self.calls = table, []

    def batch_evaluate(self, edited_images, system_prompts=None, user_prompts=None, original_images=None,
                       item_ids=None, parse=None):
        self.calls.append({"images": list(edited_images), "systems": system_prompts, "users": user_prompts,
                           "originals": original_images, "ids": item_ids})
        results = []
        for user in user_prompts:
            text = self.table.get(user)
            results.append(ScoreResult.failure("judge request failed: 500") if text is None
                           else ScoreResult(score=parse(text), raw_output=text))
        return results


def test_asks_are_grouped_into_one_batch_per_kind_and_each_item_fails_alone():
    from editjudge.benchmark import BenchmarkItem

    items = [BenchmarkItem(str(i), cat, f"i{i}", Path(f"s{i}.png")) for i, cat in enumerate(["a", "a", "odd", "a", "a"])]
    judge = TableJudge({"judge i0": "3", "look i0": "1", "judge i1": "2", "look i1": "boom", "look i3": "1",
                        "judge i4": "4"})
    fields = score_protocol_items(judge, TwoAsks(), items, [f"e{i}.png" for i in range(5)],
                                  item_ids=[f"ed/{i}" for i in range(5)])
    assert len(judge.calls) == 2  # one call per (ask name, first image shown or not), the odd item left out
    first, second = judge.calls
    assert first["users"] == ["judge i0", "judge i1", "judge i3", "judge i4"]
    assert first["originals"] == [Path(f"s{i}.png") for i in (0, 1, 3, 4)] and first["ids"] == ["ed/0", "ed/1", "ed/3", "ed/4"]
    assert second["originals"] is None and second["systems"] == ["be brief"] * 4
    assert fields[0]["score"] == 4.0 and fields[0]["sub_scores"] == {"judge": 3.0} and fields[0]["error"] is None
    assert fields[0]["raw_outputs"] == {"judge": "3", "look": "1"}
    assert fields[1]["score"] is None and "cannot read boom" in fields[1]["error"] and fields[1]["failed_stage"] == "score"
    assert fields[2]["score"] is None and fields[2]["error"] == "no prompt for odd"
    assert fields[3]["score"] is None and "judge: judge request failed: 500" in fields[3]["error"]
    assert "no judge answer" in fields[3]["error"] and fields[3]["raw_outputs"] == {"judge": None, "look": "1"}
    # a protocol may score from the answers it has: the failed request is kept beside the score
    assert fields[4]["score"] == 4.0 and "look: judge request failed" in fields[4]["partial_errors"]


# ---------------------------------------------------------------------------------- configuration


def test_shipped_configs_validate_with_a_checkout_and_name_it_in_the_settings(tmp_path, monkeypatch):
    from editjudge.models.reward.judge import judge_params
    from editjudge.score_settings import scoring_settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    checkout = standin_checkout(tmp_path / "ImgEdit")
    bench, edits = standin_benchmark(tmp_path / "bench")
    digest = hashlib.sha256((checkout / "Benchmark/Basic/prompts.json").read_bytes()).hexdigest()
    for name in ("imgedit_gpt41.yaml", "imgedit_qwen3vl.yaml"):
        for folder in (checkout, checkout / "Benchmark" / "Basic"):  # the root or the Basic folder
            config = load_config(ROOT / "configs" / name, [f"benchmark.path={bench}", f"output_dir={tmp_path}",
                                                          f"reward_model.params.protocol.dir={folder}",
                                                          f"editing.editors.0.image_dir={edits}"], models=False)
            identity = scoring_settings(config)["protocol"]
            assert identity == {"protocol": "imgedit", "version": ImgEditBasic.version,
                                "files": {"Benchmark/Basic/prompts.json": digest}}
            assert "protocol" not in judge_params(config.reward_model, "cpu")  # never reaches the backend
    judged = scoring_settings(load_config(ROOT / "configs" / "imgedit_gpt41.yaml", [
        f"benchmark.path={bench}", f"reward_model.params.protocol.dir={checkout}", f"editing.editors.0.image_dir={edits}"],
        models=False))["judge"]["settings"]
    assert judged["model"] == MODEL and judged["text_before_images"] is True and judged["image_format"] == "png"
    assert judged["temperature"] is None and judged["max_new_tokens"] is None


def test_protocol_mistakes_are_configuration_errors_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    bench, edits = standin_benchmark(tmp_path / "bench")
    (tmp_path / "empty").mkdir()
    base = ROOT / "configs" / "imgedit_gpt41.yaml"
    cases = {"reward_model.params.protocol={name: imgedot, dir: /tmp}": "unknown protocol 'imgedot'",
             f"reward_model.params.protocol={{name: imgedit, dir: {tmp_path / 'nowhere'}}}": "is not a folder",
             f"reward_model.params.protocol={{name: imgedit, dir: {tmp_path / 'empty'}}}": "has no Benchmark/Basic",
             f"reward_model.params.protocol={{name: imgedit, dir: {tmp_path}, level: 3}}": "unexpected keyword",
             "reward_model.params.protocol={name: imgedit}": "dir: required"}
    for override, expected in cases.items():
        _, problems = read_config(base, [f"benchmark.path={bench}", f"editing.editors.0.image_dir={edits}", override])
        assert any(expected in p for p in problems), (override, problems)
        assert len(problems) == 1, problems
    standin_checkout(tmp_path / "ImgEdit")
    _, problems = read_config(base, [f"benchmark.path={bench}", f"editing.editors.0.image_dir={edits}",
                                     f"reward_model.params.protocol.dir={tmp_path / 'ImgEdit'}",
                                     "reward_model.params.rubric=viescore"])
    assert len(problems) == 1 and "brings its own prompts" in problems[0], problems
    result = subprocess.run([sys.executable, "main.py", "--config", str(base), "--set", f"benchmark.path={bench}",
                             "--set", f"output_dir={tmp_path / 'out'}", "--set", f"editing.editors.0.image_dir={edits}",
                             "--set",
                             f"reward_model.params.protocol.dir={tmp_path / 'empty'}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, OPENAI_API_KEY="sk-test-not-a-key"))
    assert result.returncode == 2 and "has no Benchmark/Basic/prompts.json" in result.stderr
    assert not (tmp_path / "out").exists()
    # --export imgedit needs the protocol configured (checked before the run, as --export gedit's needs)
    from editjudge.checks import export_problems
    from editjudge.stage_common import load_items

    config = load_config(base, [f"benchmark.path={bench}", f"editing.editors.0.image_dir={edits}",
                                "reward_model.params.protocol=null"], models=False)
    (problem,) = export_problems(config, load_items(config), ["imgedit"])
    assert "--export imgedit needs reward_model.params.protocol" in problem


def test_the_reward_server_refuses_a_protocol(tmp_path, monkeypatch, capsys):
    from editjudge.serve.cli import main as serve_main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    standin_checkout(tmp_path / "ImgEdit")
    config = tmp_path / "serve.yaml"
    config.write_text(json.dumps({"reward_model": {"type": "openai", "params": {
        "model": MODEL, "base_url": "http://127.0.0.1:9/v1", "api_key_env": "OPENAI_API_KEY",
        "protocol": {"name": "imgedit", "dir": str(tmp_path / "ImgEdit")}}}}))
    assert serve_main(["--config", str(config)]) == 2
    assert "runs in the job" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- end to end


def main_py(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OPENAI_API_KEY="sk-test-not-a-key"))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_imgedit_end_to_end_equals_imgedit_own_scripts(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    checkout = standin_checkout(tmp_path / "ImgEdit")
    prompts = json.loads((checkout / "Benchmark/Basic/prompts.json").read_text())
    bench, edits = standin_benchmark(tmp_path / "bench")
    out = tmp_path / "out"
    with FakeChat() as chat:
        args = ["--config", str(ROOT / "configs" / "imgedit_gpt41.yaml"), "--set", f"benchmark.path={bench}",
                "--set", f"editing.editors.0.image_dir={edits}", "--set", f"output_dir={out}",
                "--set", f"reward_model.params.base_url={chat.url}", "--set", "reward_model.params.max_retries=0",
                "--set", f"reward_model.params.protocol.dir={checkout}"]
        plan = main_py(*args, "--export", "imgedit").stderr
        assert f"judge      openai {MODEL} (protocol imgedit from {checkout}" in plan
        asked = [key for key, (kind, _) in ITEMS.items() if key != NO_EDIT and kind in prompts]
        assert len(chat.bodies) == len(asked)

        # The requests: basic_bench.py's shape, text first, then the source, then the edit.
        by_text = {}
        for body in chat.bodies:
            assert set(body) == {"model", "messages"} and body["model"] == MODEL
            (message,) = body["messages"]
            text, source, edit = message["content"]
            assert message["role"] == "user" and text["type"] == "text"
            by_text[text["text"]] = (data_url_bytes(source), data_url_bytes(edit))
        expected_answers = {}
        for key in asked:
            kind, instruction = ITEMS[key]
            sent = prompts[kind].replace("<edit_prompt>", instruction)
            source, edit = by_text[sent]
            assert np.array_equal(pixels(source), np.asarray(Image.open(bench.parent / "singleturn" / kind / f"{key}.jpg")))
            assert np.array_equal(pixels(edit), np.asarray(Image.open(edits / f"{key}.png")))
            expected_answers[key] = answer_for(sent)

        # Per item, per type and overall: as step1 and step2 compute them from the same answers.
        expected_items = {k: upstream_item(a) for k, a in expected_answers.items()}
        assert {k for k, v in expected_items.items() if v is None} == {"103", "107"}  # the UNREADABLE ones
        scored = {k: v for k, v in expected_items.items() if v is not None}
        records = {r["item_id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
        assert set(records) == set(ITEMS)  # none lost
        for key, value in expected_items.items():
            assert records[key]["score"] == value and records[key]["raw_outputs"] == {"score": expected_answers[key]}
            assert (records[key]["failed_stage"] == "score") == (value is None)
        assert "no 'Name: N' line" in records["103"]["error"]
        assert "edit type 'warp' has no prompt" in records["109"]["error"] and records["109"]["failed_stage"] == "score"
        assert records[NO_EDIT]["failed_stage"] == "edit"
        summary = json.loads((out / "summary.json").read_text())
        mine = summary["protocol"]["editors"]["my-editor"]
        types = upstream_types(scored)
        assert {t: v["score"] for t, v in mine["types"].items()} == {**types, "warp": None}
        assert mine["overall"] == round(sum(types.values()) / len(types), 2)
        assert mine["n"] == len(ITEMS) and mine["n_scored"] == len(scored)
        digest = hashlib.sha256((checkout / "Benchmark/Basic/prompts.json").read_bytes()).hexdigest()
        assert summary["protocol"]["files"] == {"Benchmark/Basic/prompts.json": digest}
        for report in ("report.md", "report.html"):
            text = (out / report).read_text()
            assert "imgedit protocol" in text and digest[:12] in text
        assert f"{mine['overall']:.2f}" in (out / "report.md").read_text()

        # The export: what step1 reads, and what step1 and step2 write.
        export = out / "export" / "imgedit" / "my-editor"
        assert json.loads((export / "result.json").read_text()) == expected_answers
        assert json.loads((export / "average_score.json").read_text()) == scored
        assert json.loads((export / "typescore.json").read_text()) == types
        assert set(json.loads((export / "omitted_items.json").read_text())) == {NO_EDIT, "109"}

        # Another prompts.json is another protocol: another settings hash, and a rerun rescores.
        from editjudge.score_settings import scoring_settings_hash

        def settings_hash():
            return scoring_settings_hash(load_config(args[1], [a for a in args[3::2]], models=False))

        before = settings_hash()
        assert {r["settings"] for r in records.values()} == {before}
        # An item whose edit type changes gets that type's prompt on the next run; the others are kept.
        meta = json.loads(bench.read_text())
        meta["110"]["edit_type"] = "extract"
        bench.write_text(json.dumps(meta))
        main_py(*args, "--stage", "score")
        (moved,) = chat.bodies[len(asked):]
        assert moved["messages"][0]["content"][0]["text"] == prompts["extract"].replace("<edit_prompt>", ITEMS["110"][1])
        asked.append("110 again")
        prompts["add"] = prompts["add"].replace("carefully", "strictly")
        (checkout / "Benchmark/Basic/prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
        assert settings_hash() != before
        after = settings_hash()
        main_py(*args, "--stage", "score")
        rescored = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
        assert len(rescored) == len(ITEMS) and {r["settings"] for r in rescored} == {after}
        # every item rescored; only the changed prompts' requests reach the server (the others are the same
        # request, answered from the response cache)
        assert ["strictly" in b["messages"][0]["content"][0]["text"] for b in chat.bodies[len(asked):]] == [True] * 3


def test_the_protocol_path_on_the_transformers_judge(tmp_path, judge_path):
    """The in-process backend answers through the same path: its answers (unreadable here) are failure
    records with the text kept; no item is lost."""
    from editjudge.pipeline import run

    checkout = standin_checkout(tmp_path / "ImgEdit")
    bench, edits = standin_benchmark(tmp_path / "bench")
    data = {"benchmark": {"path": str(bench), "format": "imgedit", "limit": 3},
            "editing": {"editors": [{"name": "e", "type": "precomputed", "image_dir": str(edits)}]},
            "reward_model": {"type": "qwen3_vl", "params": {
                "model_path": judge_path, "device": "cpu", "batch_size": 2, "max_new_tokens": 6, "show_progress": False,
                "text_before_images": True, "protocol": {"name": "imgedit", "dir": str(checkout)}}},
            "output_dir": str(tmp_path / "out")}
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))
    run(load_config(path), "all")
    records = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in records] == ["101", "102", "103"]
    for r in records:
        answer = r["raw_outputs"]["score"]
        assert isinstance(answer, str)
        assert r["score"] == upstream_item(answer)  # whatever the tiny model said, read as step1 reads it
        assert (r["error"] is None) == (r["score"] is not None)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["protocol"]["editors"]["e"]["n"] == 3


def test_the_transformers_judge_can_put_the_text_first_without_changing_older_hashes():
    from editjudge.models.reward.qwen3_vl import Qwen3VLRewardModel
    from editjudge.models.reward.settings import identity_of

    judge = Qwen3VLRewardModel.__new__(Qwen3VLRewardModel)  # the message builder alone, no weights
    for first, order in ((False, ["image", "image", "text"]), (True, ["text", "image", "image"])):
        judge.text_before_images = first
        (user,) = judge._build_messages("edit.png", "", "rate it", original_image="source.png")
        assert [part["type"] for part in user["content"]] == order
        assert [part.get("image") for part in user["content"] if part["type"] == "image"] == ["source.png", "edit.png"]
    off = identity_of({"model_path": "/nowhere"})
    assert "text_before_images" not in off["settings"]  # as before the setting existed: no rescoring
    assert identity_of({"model_path": "/nowhere", "text_before_images": False}) == off
    assert identity_of({"model_path": "/nowhere", "text_before_images": True})["settings"]["text_before_images"] is True
