"""The ``openai`` judge backend: against a real vLLM server on 127.0.0.1, and through a fault proxy.

The happy path has no mock: the tiny judge served by vLLM (the same weights the transformers
backend loads) gives the same records through the pipeline. Faults are real HTTP faults made by
``tests/judge_proxy.py`` in front of that server. The server tests skip where vLLM is not
installed (``make vllm``), unless EDITJUDGE_REQUIRE_VLLM=1 says they must run.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from pathlib import Path

import pytest

from editjudge.config import load_config
from editjudge.models.reward.openai_judge import OpenAIRewardModel, _without_images, answer_schema, smart_resize
from editjudge.models.reward.remote import MAX_RETRY_AFTER, retry_after_seconds
from editjudge.models.reward.rubrics import get_rubric
from editjudge.pipeline import run
from tests.judge_proxy import JudgeProxy
from tests.test_pipeline import main_py, make_config, write
from tests.vllm_server import SERVER_ENV, records, vllm_python

KEY_ENV = "EDITJUDGE_TEST_JUDGE_KEY"
FAST_RETRIES = {"max_retries": 3, "retry_backoff": 0.01}


# ------------------------------------------------------------------ no server needed


def test_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as reference

    for height, width in [(30, 40), (512, 512), (1000, 333), (77, 2000), (4000, 3000), (33, 33)]:
        for low, high in [(1024, 16384), (56 * 56, 28 * 28 * 1280), (32 * 32, 512 * 512)]:
            assert smart_resize(height, width, 32, low, high) == reference(height, width, 32, low, high)


def test_retry_after_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds("100000") == MAX_RETRY_AFTER
    now = time.time()
    assert 9 <= retry_after_seconds(email.utils.formatdate(now + 10, usegmt=True), now=now) <= 10
    assert retry_after_seconds("not a date") is None and retry_after_seconds(None) is None


def test_answer_schema_follows_the_prompt():
    from editjudge.models.reward.prompts import DEFAULT_USER_PROMPT

    assert answer_schema(DEFAULT_USER_PROMPT, 0, 10)["required"] == ["score"]
    semantics, quality = get_rubric("viescore").prompts
    assert answer_schema(semantics.user_prompt, 0, 10)["required"] == ["editing_success", "over_editing"]
    assert answer_schema(quality.user_prompt, 0, 10)["properties"]["artifacts"] == {
        "type": "number", "minimum": 0, "maximum": 10}
    assert answer_schema("Rate it.", 0, 10) is None


def test_cache_key_holds_image_hashes_not_pixels():
    messages = [{"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                             {"type": "text", "text": "t"}]}]
    keyed = _without_images(messages, ["abc"])
    assert keyed[1]["content"][0] == {"type": "image_sha256", "sha256": "abc"}
    assert "base64" not in str(keyed) and messages[1]["content"][0]["type"] == "image_url"


def test_config_mistakes_are_named(monkeypatch):
    monkeypatch.delenv("EDITJUDGE_UNSET_KEY", raising=False)
    problems = OpenAIRewardModel.config_problems({"base_url": "ftp://x", "api_key_env": "sk-123 secret",
                                                  "max_concurrent": 0, "colour": 1})
    text = "\n".join(problems)
    assert "model: required" in text and "base_url must be an http(s) URL" in text
    assert "NAME of an environment variable" in text and "max_concurrent must be a positive integer" in text
    assert "unknown keys ['colour']" in text
    missing = OpenAIRewardModel.config_problems({"model": "m", "api_key_env": "EDITJUDGE_UNSET_KEY"})
    assert missing == ["api_key_env: the environment variable EDITJUDGE_UNSET_KEY is not set (or empty)"]


def test_config_mistake_stops_the_run_with_status_2(tmp_path, judge_path, precomputed_dir):
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["reward_model"] = {"type": "openai", "params": {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                                         "api_key_env": "EDITJUDGE_UNSET_KEY", "max_retries": -1}}
    result = main_py(write(tmp_path, data))
    assert result.returncode == 2
    assert "EDITJUDGE_UNSET_KEY is not set" in result.stderr and "max_retries must be" in result.stderr
    assert not (tmp_path / "out").exists()


def test_image_area_resizes_to_an_area_with_the_aspect_ratio_kept(tmp_path, monkeypatch):
    """``image_area``: each image at that many pixels of area, its aspect ratio kept, sides truncated."""
    import base64
    import io

    from PIL import Image

    monkeypatch.setenv("EDITJUDGE_TEST_KEY", "k")
    judge = OpenAIRewardModel(model="m", base_url="http://127.0.0.1:9/v1", api_key_env="EDITJUDGE_TEST_KEY",
                              image_area=512 * 512, cache_dir=False)
    sizes = {}
    for size in ((1000, 500), (333, 777), (512, 512)):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (90, 120, 30)).save(path)
        part, _ = judge._image_part(str(path))
        data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
        sizes[size] = Image.open(io.BytesIO(data)).size
    # width = int(sqrt(area * w / h)), height = int(width / (w / h))
    assert sizes == {(1000, 500): (724, 362), (333, 777): (335, 781), (512, 512): (512, 512)}
    assert OpenAIRewardModel.config_problems({"model": "m", "base_url": "http://x/v1", "image_area": 10})


def test_gedit_gpt41_config_pins_the_snapshot_in_the_settings_hash(tmp_path, precomputed_dir, monkeypatch):
    from editjudge.pipeline import scoring_settings, scoring_settings_hash
    from tests.conftest import ROOT, SAMPLE
    from tests.test_first_hour import fake_viescore

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    editors = [{"name": "e", "type": "precomputed", "image_dir": str(precomputed_dir)}]
    prompts = fake_viescore(tmp_path / "viescore")  # the config reads the official prompts from a checkout
    here = [f"benchmark.path={SAMPLE}", "benchmark.format=native", "benchmark.language=null",
            f"output_dir={tmp_path}", f"editing.editors={editors}", f"reward_model.params.viescore_prompts_dir={prompts}"]

    def load(*overrides):
        return load_config(ROOT / "configs" / "gedit_gpt41.yaml", here + list(overrides))

    config = load()
    settings = scoring_settings(config)
    judged = settings["judge"]["settings"]
    assert settings["type"] == "openai" and judged["model"] == "gpt-4.1-2025-04-14"
    # GEdit-Bench's request (tests/test_gedit_request.py): part of the protocol, and of the hash
    assert judged["image_area"] is None  # its scorer resizes nothing but the edit (to the source's size)
    assert judged["temperature"] is None and judged["max_new_tokens"] == 1400
    assert judged["image_format"] == "jpeg" and judged["text_before_images"] is True
    assert settings["rubric"]["name"] == "viescore_official"
    assert "base_url" not in judged and "max_concurrent" not in judged
    assert "sk-test-not-a-key" not in str(settings)
    # Another snapshot is another settings hash; other servers of the same model are not.
    assert scoring_settings_hash(load("reward_model.params.model=gpt-4.1")) != scoring_settings_hash(config)
    assert scoring_settings_hash(load("reward_model.params.base_url=[http://a/v1]")) == scoring_settings_hash(config)


# ------------------------------------------------------------------ a real vLLM server


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    """The tiny judge served by vLLM on 127.0.0.1 (stopped by its PID at the end of the module)."""
    from editjudge.models.reward.vllm_judge import VLLMServer

    python = vllm_python()
    saved = {k: os.environ.get(k) for k in SERVER_ENV}
    os.environ.update(SERVER_ENV)
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    try:
        server = VLLMServer(python, str(tiny_models["judge"]), "cpu", log,
                            ["--dtype", "float32", "--max-model-len", "2048", "--max-logprobs", "20", "--seed", "0"])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    os.environ[KEY_ENV] = server.api_key
    try:
        server.wait_ready(900)
        yield server
    finally:
        server.stop()
        os.environ.pop(KEY_ENV, None)
        assert server.process.poll() is not None


def judge_config(tmp_path: Path, judge_path: str, precomputed_dir: Path, reward: dict, name="out", **params) -> dict:
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["editing"]["editors"] = [e for e in data["editing"]["editors"] if e["name"] in ("bright", "same")]
    data["reward_model"] = reward
    data["reward_model"]["params"].update(params)
    data["output_dir"] = str(tmp_path / name)
    return data


def hf(judge_path, **params) -> dict:
    return {"type": "qwen3_vl", "params": {"model_path": judge_path, "device": "cpu", "batch_size": 2,
                                           "max_new_tokens": 12, "show_progress": False, **params}}


def remote(judge_path, base_url, **params) -> dict:
    return {"type": "openai", "params": {"model": judge_path, "base_url": base_url, "api_key_env": KEY_ENV,
                                         "max_new_tokens": 12, "batch_size": 2, **params}}


def run_config(tmp_path: Path, data: dict, name: str) -> Path:
    run(load_config(write(tmp_path, data, f"{name}.yaml")), "all")
    return Path(data["output_dir"]) / "scores.jsonl"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, judge_path, precomputed_dir):
    """The transformers backend's records, generate mode, on the same benchmark."""
    tmp = tmp_path_factory.mktemp("hf")
    return records(run_config(tmp, judge_config(tmp, judge_path, precomputed_dir, hf(judge_path)), "hf"))


def distinct_requests(reference: list[dict]) -> int:
    """Scored pairs with different images or instructions: identical requests are answered once (the cache)."""
    return len({(r["item_id"], r["image_sha1"]) for r in reference if r["score"] is not None})


def test_generate_scores_equal_transformers_through_the_pipeline(server, reference, tmp_path, judge_path,
                                                                precomputed_dir, caplog):
    caplog.set_level("INFO")
    data = judge_config(tmp_path, judge_path, precomputed_dir, remote(judge_path, server.base_url, max_concurrent=1))
    got = records(run_config(tmp_path, data, "openai"))
    assert got == reference
    assert sum(r["score"] is not None for r in got) == 14
    assert "judge usage:" in caplog.text and " prompt + " in caplog.text
    # The key is in no file of the run and in no log line.
    assert server.api_key not in caplog.text
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert server.api_key.encode() not in path.read_bytes(), path


def test_concurrency_8_equals_1_spread_over_servers_and_cached(server, reference, tmp_path, judge_path,
                                                               precomputed_dir):
    with JudgeProxy(server.base_url.removesuffix("/v1")) as a, JudgeProxy(server.base_url.removesuffix("/v1")) as b:
        data = judge_config(tmp_path, judge_path, precomputed_dir,
                            remote(judge_path, [a.base_url, b.base_url], max_concurrent=8))
        scores = run_config(tmp_path, data, "concurrent")
        assert records(scores) == reference
        asked = a.forwarded + b.forwarded
        assert a.forwarded > 0 and b.forwarded > 0
        assert distinct_requests(reference) <= asked <= 14  # two threads may miss the cache for one image at once
        # A rerun that rescores everything pays nothing: every answer comes from the response cache.
        run(load_config(write(tmp_path, data, "again.yaml")), "score", overwrite=True)
        assert a.forwarded + b.forwarded == asked
        assert records(scores) == reference


def test_logits_mode_within_1e3_of_transformers_through_the_pipeline(server, tmp_path, judge_path, precomputed_dir):
    expected = records(run_config(tmp_path, judge_config(tmp_path, judge_path, precomputed_dir,
                                                         hf(judge_path, score_mode="logits"), "hf"), "hf"))
    got = records(run_config(tmp_path, judge_config(tmp_path, judge_path, precomputed_dir,
                                                    remote(judge_path, server.base_url, score_mode="logits",
                                                           max_concurrent=4), "vllm"), "vllm"))
    assert [(r["editor"], r["item_id"], r["error"] is None) for r in got] == \
        [(r["editor"], r["item_id"], r["error"] is None) for r in expected]
    pairs = [(g["score"], e["score"]) for g, e in zip(got, expected) if e["score"] is not None]
    assert len(pairs) == 14
    assert max(abs(g - e) for g, e in pairs) < 1e-3
    assert len({round(e, 1) for _, e in pairs}) > 3  # real, different expected values, not one constant


def test_json_schema_makes_the_judge_answer_a_rubrics_fields(server, tmp_path, judge_path, precomputed_dir):
    """With response_format json_schema, every request carries the schema of the fields its prompt asks for,
    and every answer the server constrains to it parses into those fields (for any judge: what a given
    judge answers unconstrained is not the point)."""
    with JudgeProxy(server.base_url.removesuffix("/v1")) as proxy:
        data = judge_config(tmp_path, judge_path, precomputed_dir,
                            remote(judge_path, proxy.base_url, rubric="viescore", max_concurrent=4, max_new_tokens=40,
                                   response_format="json_schema"), "schema")
        constrained = [r for r in records(run_config(tmp_path, data, "schema")) if r["failed_stage"] != "edit"]
    schemas = [json.loads(body)["response_format"] for body in proxy.forwarded_bodies]
    assert schemas and all(s["type"] == "json_schema" and s["json_schema"]["strict"] for s in schemas)
    asked = {frozenset(s["json_schema"]["schema"]["required"]) for s in schemas}
    assert asked == {frozenset({"editing_success", "over_editing"}), frozenset({"naturalness", "artifacts"})}
    assert constrained and all(r["error"] is None and 0 <= r["score"] <= 10 for r in constrained), constrained[0]
    assert all(set(r["sub_scores"]) >= {"editing_success", "over_editing", "naturalness", "artifacts"}
               for r in constrained)


@pytest.mark.parametrize("fault", ["429", "500", "drop"])
def test_every_third_request_faulted_is_retried_nothing_lost_or_duplicated(fault, server, reference, tmp_path,
                                                                         judge_path, precomputed_dir):
    with JudgeProxy(server.base_url.removesuffix("/v1"), fault=fault, every=3) as proxy:
        data = judge_config(tmp_path, judge_path, precomputed_dir,
                            remote(judge_path, proxy.base_url, max_concurrent=4, **FAST_RETRIES))
        got = records(run_config(tmp_path, data, fault))
    assert got == reference
    assert proxy.posts > proxy.forwarded  # faults happened
    # Each distinct request reached the server (at most one extra when two threads missed the cache at once).
    assert len(set(proxy.forwarded_bodies)) == distinct_requests(reference) <= proxy.forwarded <= 14


def test_retry_after_is_honoured(server, reference, tmp_path, judge_path, precomputed_dir):
    with JudgeProxy(server.base_url.removesuffix("/v1"), fault="429", every=2, retry_after="1.5") as proxy:
        data = judge_config(tmp_path, judge_path, precomputed_dir,
                            remote(judge_path, proxy.base_url, max_concurrent=1, max_retries=2, retry_backoff=0.001))
        data["editing"]["editors"] = data["editing"]["editors"][:1]
        data["benchmark"]["limit"] = 2
        started = time.perf_counter()
        got = records(run_config(tmp_path, data, "retry-after"))
    assert time.perf_counter() - started >= 1.5  # the backoff alone would have waited about a millisecond
    assert proxy.posts == 3 and [r["score"] for r in got] == [r["score"] for r in reference[:2]]


def test_logits_mode_is_refused_where_the_server_cannot_prefill(server, judge_path):
    with JudgeProxy(server.base_url.removesuffix("/v1"), fault="no_prefill") as proxy:
        with pytest.raises(ValueError, match="needs a server that continues a prefilled assistant turn") as caught:
            OpenAIRewardModel.from_config({"model": judge_path, "base_url": proxy.base_url, "api_key_env": KEY_ENV,
                                           "score_mode": "logits"})
    assert "Unrecognized request argument supplied: continue_final_message" in str(caught.value)
    assert "Use score_mode: generate" in str(caught.value)


def test_never_answering_server_times_out_then_records_failures(server, tmp_path, judge_path, precomputed_dir):
    with JudgeProxy(server.base_url.removesuffix("/v1"), fault="hang") as proxy:
        data = judge_config(tmp_path, judge_path, precomputed_dir,
                            remote(judge_path, proxy.base_url, max_concurrent=8, timeout=0.5, max_retries=1,
                                   retry_backoff=0.01))
        data["benchmark"]["limit"] = 4
        started = time.perf_counter()
        got = records(run_config(tmp_path, data, "hang"))
    assert time.perf_counter() - started < 60
    scored = [r for r in got if r["failed_stage"] != "edit"]
    assert len(scored) >= 6 and proxy.posts == 2 * len(scored)  # every item tried twice
    for record in scored:
        assert record["score"] is None and record["failed_stage"] == "score"
        assert "timed out after 0.5 s" in record["error"] and "gave up after 2 tries" in record["error"]


def test_wrong_key_is_one_clear_error_before_scoring(server, tmp_path, judge_path, precomputed_dir):
    with JudgeProxy(server.base_url.removesuffix("/v1")) as proxy:
        data = judge_config(tmp_path, judge_path, precomputed_dir, remote(judge_path, proxy.base_url))
        result = main_py(write(tmp_path, data), env={KEY_ENV: "wrong-key-123"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("refused the API key from $EDITJUDGE_TEST_JUDGE_KEY") == 1
    assert "wrong-key-123" not in result.stderr + result.stdout
    assert proxy.posts == 0  # not one scoring request was sent
    assert all(r["score"] is None for r in records(tmp_path / "out" / "scores.jsonl"))


def test_server_gone_mid_run_is_a_clear_error_then_the_rerun_finishes(server, reference, tmp_path, judge_path,
                                                                     precomputed_dir):
    upstream = server.base_url.removesuffix("/v1")
    proxy = JudgeProxy(upstream, fault="die_after", every=4).start()
    # One editor, written 4 pairs at a time (batch_size 1): the server goes after the first write.
    data = judge_config(tmp_path, judge_path, precomputed_dir,
                        remote(judge_path, proxy.base_url, max_concurrent=1, batch_size=1, **FAST_RETRIES))
    data["editing"]["editors"] = data["editing"]["editors"][:1]
    expected = [r for r in reference if r["editor"] == "bright"]
    config_path = write(tmp_path, data)
    result = main_py(config_path, env={KEY_ENV: server.api_key})
    proxy.stop()
    assert result.returncode == 1, result.stderr[-2000:]
    assert "error: no judge server answers" in result.stderr and "rerun the same command" in result.stderr
    kept = [r for r in records(tmp_path / "out" / "scores.jsonl") if r["score"] is not None]
    assert kept == [r for r in expected if r["score"] is not None][:4]  # the first write is kept
    with JudgeProxy(upstream, port=proxy.port) as back:
        result = main_py(config_path, env={KEY_ENV: server.api_key})
    assert result.returncode == 0, result.stderr[-2000:]
    assert records(tmp_path / "out" / "scores.jsonl") == expected
    assert (proxy.forwarded, back.forwarded) == (4, 3)  # nothing asked twice


def test_both_engines_send_a_system_turn_only_for_a_system_prompt(judge):
    """The official VIEScore prompts have no system text: neither engine sends a system turn for them (an
    empty one is another prompt: Qwen2.5-VL's template adds its default system text when none is given)."""
    from PIL import Image

    api = OpenAIRewardModel(model="tiny", base_url="http://127.0.0.1:9/v1")
    try:
        image = Image.new("RGB", (8, 8))
        for system in ("", "be fair"):
            sent, _ = api._messages(image, None, system, "hello")
            local = judge._build_messages(image, system, "hello")
            assert [m["role"] for m in sent] == [m["role"] for m in local] == (["system"] if system else []) + ["user"]
    finally:
        api.close()
