"""``reward_model.type: vllm``: editjudge starts its own vLLM server, scores through it, stops it.

Through the whole pipeline with the tiny judge: the same records as the transformers backend in
generate mode (``max_pixels`` set on both, so the server's resizing is checked too); a server
killed mid-run is a clear error naming its log, finished work is kept, and the rerun finishes;
a server that cannot start is a clear error with its log's last lines. Skips where vLLM is not
installed unless EDITJUDGE_REQUIRE_VLLM=1 (see tests/vllm_server.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import editjudge.score_stage as score_stage
from editjudge.config import ConfigError, load_config
from editjudge.models.reward.prompts import fill_prompt
from editjudge.models.reward.remote import JudgeServerError
from editjudge.pipeline import run
from tests.test_openai_judge import hf, judge_config, run_config
from tests.test_pipeline import write
from tests.vllm_server import SERVER_ENV, records, vllm_python

MAX_PIXELS = 4096  # below the tiny judge's default (16384): the sample images are resized by both backends


def vllm(judge_path: str, python: str, **params) -> dict:
    return {"type": "vllm", "params": {"model_path": judge_path, "python": python, "max_new_tokens": 12,
                                       "batch_size": 2, "max_model_len": 2048, "max_pixels": MAX_PIXELS,
                                       "ready_timeout": 900, **params}}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def served_prompt_tokens(model, pair, out_dir: Path, system: str | None = None) -> list[int]:
    """The prompt token ids the vLLM server reports for one pair (its processor resized the image)."""
    (_, item), edit = pair
    messages, _ = model._messages(out_dir / edit["image"], None, model.system_prompt if system is None else system,
                                  fill_prompt(model.user_prompt, item.instruction))
    body = dict(model._generate_body(messages, "", None), return_token_ids=True)
    response = model.client.post("/chat/completions", body)
    assert response["usage"]["prompt_tokens"] == len(response["prompt_token_ids"])
    return response["prompt_token_ids"]


def local_prompt_tokens(judge_path: str, pair, out_dir: Path, system: str | None = None) -> list[int]:
    """The same prompt's token ids under the transformers judge with the same max_pixels."""
    from editjudge.images import load_image
    from editjudge.models.reward.qwen3_vl import Qwen3VLRewardModel, _Request

    (_, item), edit = pair
    local = Qwen3VLRewardModel(judge_path, max_pixels=MAX_PIXELS, show_progress=False)
    request = _Request(0, load_image(out_dir / edit["image"]), None, local.system_prompt if system is None else system,
                       fill_prompt(local.user_prompt, item.instruction))
    return local._prepare_inputs([request])["input_ids"][0].tolist()


def test_missing_vllm_environment_is_a_config_error(tmp_path, judge_path, precomputed_dir):
    data = judge_config(tmp_path, judge_path, precomputed_dir, vllm(judge_path, str(tmp_path / "no" / "python")))
    data["reward_model"]["params"]["base_url"] = "http://127.0.0.1:8000/v1"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    assert "does not exist; build it with `make vllm`" in str(caught.value)
    assert "to attach to running servers use type: openai" in str(caught.value)


def test_vllm_backend_equals_transformers_survives_a_server_death_and_stops_its_server(
        tmp_path, judge_path, precomputed_dir, monkeypatch):
    python = vllm_python()
    for key, value in SERVER_ENV.items():
        monkeypatch.setenv(key, value)
    expected = records(run_config(tmp_path, judge_config(tmp_path, judge_path, precomputed_dir,
                                                         hf(judge_path, max_pixels=MAX_PIXELS), "hf"), "hf"))
    data = judge_config(tmp_path, judge_path, precomputed_dir, vllm(judge_path, python))
    out = Path(data["output_dir"])
    config = load_config(write(tmp_path, data))

    servers = []
    original = score_stage._judge_chunk

    def kill_server_after_first_chunk(model, *args):
        if servers:
            os.kill(model.server.pid, signal.SIGKILL)  # the server dies between two chunks
        servers.append(model.server)
        return original(model, *args)

    monkeypatch.setattr(score_stage, "_judge_chunk", kill_server_after_first_chunk)
    with pytest.raises(JudgeServerError) as caught:
        run(config, "all")
    log = out / "logs" / "vllm-cpu.log"
    assert f"exited with status {-signal.SIGKILL} mid-run" in str(caught.value) and str(log) in str(caught.value)
    assert log.is_file() and "Application startup complete" in log.read_text()
    kept = [r for r in records(out / "scores.jsonl") if r["score"] is not None]
    assert kept == [r for r in expected if r["score"] is not None][:len(kept)] and 0 < len(kept) < 14
    assert not alive(servers[0].pid)

    servers.clear()

    def check_prompt_tokens_then_score(model, rubric, chunk, out_dir, protocol=None):
        if not servers:  # the same prompt on both engines, with the default and with an empty system prompt
            for system in (None, ""):
                assert served_prompt_tokens(model, chunk[0], out_dir, system) == \
                       local_prompt_tokens(judge_path, chunk[0], out_dir, system), repr(system)
        servers.append(model.server)
        return original(model, rubric, chunk, out_dir, protocol)

    monkeypatch.setattr(score_stage, "_judge_chunk", check_prompt_tokens_then_score)
    run(config, "all")
    assert records(out / "scores.jsonl") == expected
    assert servers and not alive(servers[0].pid)  # stopped by its PID when the stage ended
    assert servers[0].base_url.startswith("http://127.0.0.1:")
    for path in out.rglob("*"):  # the server's own key is in no file of the run, its log included
        if path.is_file():
            assert servers[0].api_key.encode() not in path.read_bytes(), path


def test_server_that_cannot_start_is_a_clear_error(tmp_path, judge_path):
    from editjudge.models.reward.vllm_judge import VLLMRewardModel

    python = vllm_python()
    with pytest.raises(JudgeServerError) as caught:
        VLLMRewardModel(judge_path, python=python, output_dir=str(tmp_path), ready_timeout=600,
                        server_args=["--no-such-flag"])
    assert "exited with status" in str(caught.value) and "while starting" in str(caught.value)
    assert "--no-such-flag" in str(caught.value)  # the log's last lines name the problem


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "editjudge-killed"])
def test_the_server_goes_when_editjudge_is_interrupted_or_killed(how, tmp_path, judge_path, precomputed_dir):
    """Ctrl-C while the server starts stops it by its PID; a SIGKILLed editjudge takes it along
    (the parent-death signal)."""
    import re
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    python = vllm_python()
    data = judge_config(tmp_path, judge_path, precomputed_dir, vllm(judge_path, python))
    log = tmp_path / "editjudge.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "main.py", "--config", write(tmp_path, data)], cwd=ROOT,
                                   stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ, **SERVER_ENV))
    try:
        deadline = time.monotonic() + 300
        while not (found := re.search(r"vLLM server pid (\d+)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        pid = int(found.group(1))
        assert alive(pid)
        process.send_signal(how)
        process.wait(120)
        deadline = time.monotonic() + 60
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(pid), f"the vLLM server {pid} outlived editjudge"
        if how == signal.SIGINT:
            assert "stopping the vLLM server" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
