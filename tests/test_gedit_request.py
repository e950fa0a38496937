"""configs/gedit_gpt41.yaml sends the request GEdit-Bench's own GPT-4.1 scorer sends, field by field.

No network: the judge is built from the config as the score stage builds it, its rubric runs for one
item, and every body it would POST to ``/chat/completions`` is captured at ``client.post``.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from editjudge.config import load_config
from editjudge.models.reward.judge import judge_params, judge_rubric
from editjudge.models.reward.openai_judge import OpenAIRewardModel
from editjudge.models.reward.rubrics import score_with_rubric
from editjudge.pipeline import scoring_settings_hash
from tests.conftest import ROOT, SAMPLE
from tests.test_first_hour import fake_viescore

# GEdit-Bench's request, described in our own words (nothing of its code is copied here) from
# stepfun-ai/Step1X-Edit at commit 570eba6ebda0c45c013983a483afbf2fd12bfcbc (the GPT client file was
# last changed in eda7f42e6bd8519a7e3e8ca0be6133b25170addf, "add GEdit-Bench-Eval"):
# - GEdit-Bench/test_gedit_score.py builds VIEScore(backbone="gpt4o", task="tie"); per item it opens
#   the saved source (the dataset's `input_image`, as written by generate_image_example.py) as is, and
#   the edited image converted to RGB and resized to the source's size; it passes [source, edited] as
#   PIL images. calculate_dimensions (512 x 512 of area) is only used in generate_image_example.py, on
#   the editor's input: the scorer resizes nothing else.
# - GEdit-Bench/viescore/__init__.py: the "gpt4o" backbone is the GPT4o class with model_name "gpt-4.1";
#   PIL inputs switch the client to base64 encoding. SC goes with both images (source first), PQ with
#   the last one (the edit) alone; each is its own request; the prompts are the vie_prompts.py strings
#   joined by newlines, with <instruction> replaced.
# - GEdit-Bench/viescore/mllm_tools/openai.py, GPT4v.prepare_prompt: a content list whose first part is
#   the text ({"type": "text", "text": ...}), followed by one {"type": "image_url", "image_url": {"url":
#   ...}} per image (no "detail"); each image goes through EXIF transposition and an RGB conversion, is
#   saved by Pillow as JPEG with no options (Pillow's defaults) and sent as "data:image/jpeg;base64,...".
#   GPT4v.get_parsed_output: the JSON payload has exactly three keys: model, messages (one message,
#   role "user", that content) and max_tokens 1400: no system message, temperature, top_p, seed or
#   response_format (so OpenAI's defaults apply: temperature 1).
UPSTREAM = {
    "repository": "stepfun-ai/Step1X-Edit",
    "file": "GEdit-Bench/viescore/mllm_tools/openai.py",
    "commit": "570eba6ebda0c45c013983a483afbf2fd12bfcbc",
    "body_keys": {"model", "messages", "max_tokens"},
    "model": "gpt-4.1",
    "max_tokens": 1400,
    "roles": ["user"],
    "content_types": {"SC": ["text", "image_url", "image_url"], "PQ": ["text", "image_url"]},
    "images": {"SC": ["source", "edited"], "PQ": ["edited"]},
    "text_part_keys": {"type", "text"},
    "image_part_keys": {"type", "image_url"},
    "image_url_keys": {"url"},
    "url_prefix": "data:image/jpeg;base64,",
    "image_size": "as given: the source at its own size, the edit at the source's size",
}
# The one value editjudge changes on purpose: a dated snapshot (what the alias named when GEdit-Bench
# was published), so that scores from another snapshot never mix.
PINNED_MODEL = "gpt-4.1-2025-04-14"


def upstream_jpeg(image: Image.Image) -> bytes:
    """The bytes GEdit-Bench's client encodes: Pillow's JPEG encoder with its default settings."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


def gpt41_config(tmp_path, *overrides):
    prompts = fake_viescore(tmp_path / "Step1X-Edit" / "GEdit-Bench" / "viescore")
    editors = [{"name": "e", "type": "precomputed", "image_dir": str(tmp_path)}]
    here = [f"editing.editors={editors}", f"benchmark.path={SAMPLE}", "benchmark.format=native",
            "benchmark.language=null",
            f"output_dir={tmp_path / 'out'}", f"reward_model.params.viescore_prompts_dir={prompts}",
            "reward_model.params.cache_dir=false"]
    return load_config(ROOT / "configs" / "gedit_gpt41.yaml", here + list(overrides))


def captured_requests(tmp_path, monkeypatch, *overrides):
    """The bodies the judge of gedit_gpt41.yaml POSTs for one item, and the item's images."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    config = gpt41_config(tmp_path, *overrides)
    judge = OpenAIRewardModel(**judge_params(config.reward_model, None))  # as the score stage, no preflight
    rubric = judge_rubric(dict(config.reward_model.params))
    bodies = []

    def post(path, body):
        assert path == "/chat/completions"
        bodies.append(json.loads(json.dumps(body)))  # what goes on the wire
        return {"choices": [{"message": {"content": '{"score": [8, 9], "reasoning": "ok"}'},
                             "finish_reason": "stop"}], "model": judge.model}

    monkeypatch.setattr(judge.client, "post", post)
    source = Image.new("RGB", (300, 200), (200, 40, 40))
    source.paste((20, 90, 200), (40, 30, 160, 150))
    edited = Image.new("RGB", (300, 200), (30, 160, 60))
    results = score_with_rubric(judge, rubric, [edited], ["make it green"], [source])
    assert results[0].error is None and results[0].score == pytest.approx(8.0)
    return bodies, source, edited, rubric


def test_gpt41_config_sends_gedit_benchs_own_request(tmp_path, monkeypatch):
    bodies, source, edited, rubric = captured_requests(tmp_path, monkeypatch)
    assert len(bodies) == 2  # SC then PQ, one request each, as VIEScore.evaluate
    sent_images = {"source": upstream_jpeg(source), "edited": upstream_jpeg(edited)}
    for name, body, prompt in zip(("SC", "PQ"), bodies, rubric.prompts):
        assert set(body) == UPSTREAM["body_keys"], name  # no temperature, seed, response_format, top_p
        assert body["model"] == PINNED_MODEL and UPSTREAM["model"] in body["model"]
        assert body["max_tokens"] == UPSTREAM["max_tokens"]
        assert [m["role"] for m in body["messages"]] == UPSTREAM["roles"]  # no system turn
        content = body["messages"][0]["content"]
        assert [part["type"] for part in content] == UPSTREAM["content_types"][name]
        text, *images = content
        assert set(text) == UPSTREAM["text_part_keys"]
        assert text["text"] == prompt.user_prompt.replace("{instruction}", "make it green")
        assert "Context ALPHA" in text["text"]  # the official prompt files' text, joined as upstream
        for part, which in zip(images, UPSTREAM["images"][name]):
            assert set(part) == UPSTREAM["image_part_keys"] and set(part["image_url"]) == UPSTREAM["image_url_keys"]
            url = part["image_url"]["url"]
            assert url.startswith(UPSTREAM["url_prefix"])
            data = base64.b64decode(url[len(UPSTREAM["url_prefix"]):])
            with Image.open(io.BytesIO(data)) as decoded:
                assert decoded.format == "JPEG" and decoded.size == (300, 200)  # not resized
            assert data == sent_images[which]  # Pillow's default JPEG settings (same Pillow here)
    assert "Editing instruction: make it green" in bodies[0]["messages"][0]["content"][0]["text"]


def test_each_request_option_is_in_the_settings_hash_and_the_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    base = scoring_settings_hash(gpt41_config(tmp_path))
    changes = ["reward_model.params.text_before_images=false", "reward_model.params.image_format=png",
               "reward_model.params.temperature=0", "reward_model.params.max_new_tokens=256"]
    hashes = {change: scoring_settings_hash(gpt41_config(tmp_path, change)) for change in changes}
    assert base not in hashes.values() and len(set(hashes.values())) == len(changes)

    # The response cache: a judge with another option asks the server again.
    cache = tmp_path / "cache"
    posts = []
    judges = []
    for option in ({}, {"text_before_images": False}, {"image_format": "png"}, {"temperature": 0.0}):
        params = dict(model=PINNED_MODEL, base_url="http://127.0.0.1:9/v1", cache_dir=str(cache),
                      system_prompt="", text_before_images=True, image_format="jpeg", temperature=None)
        judge = OpenAIRewardModel(**dict(params, **option))
        monkeypatch.setattr(judge.client, "post", lambda path, body: posts.append(body) or {
            "choices": [{"message": {"content": '{"score": 7}'}, "finish_reason": "stop"}]})
        judges.append(judge)
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    for judge in judges + judges[:1]:  # the first judge again: from the cache
        assert judge.batch_score([image], user_prompts="Rate it. Answer {\"score\": N}.") == [7.0]
    assert len(posts) == 4 and judges[0].stats.cache_hits == 1


def test_request_options_are_checked_with_the_config():
    problems = OpenAIRewardModel.config_problems({"model": "m", "base_url": "http://x/v1", "image_format": "webp",
                                                  "text_before_images": "yes", "temperature": -1})
    assert any(p.startswith("image_format must be one of ['jpeg', 'png']") for p in problems)
    assert any(p.startswith("text_before_images must be true or false") for p in problems)
    assert any(p.startswith("temperature must be a non-negative number, or null") for p in problems)
    assert not OpenAIRewardModel.config_problems({"model": "m", "base_url": "http://x/v1", "temperature": None})
