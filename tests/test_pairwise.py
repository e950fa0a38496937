"""Pairwise judging: verdicts read from answers, the two orders combined, consistency and position bias,
verdicts from pointwise scores, the judge contract's several images before the edited one (through the
real processor and the tiny real judge, and over HTTP to the API judge), and ``editjudge pairwise`` end
to end on a run of two precomputed editors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from editjudge.trust.pairwise import (
    BOTH_BAD, BOTH_GOOD, A_WINS, B_WINS, VerdictParser, combine, order_consistency, parse_verdict,
    pointwise_verdict, position_bias, summarize, swap, verdict_of, win_rates,
)
from tests.protocol_fixtures import FakeChat, sent_image_sizes

# ------------------------------------------------------------------ verdicts


@pytest.mark.parametrize("answer, verdict", [
    ("[[A>B]]", A_WINS),
    ("Edit B keeps the face intact. [[B>A]]", B_WINS),
    ("[[ a = b = good ]]", BOTH_GOOD),
    ("[[A=B=Bad]]", BOTH_BAD),
    ("[[B<A]]", A_WINS),
    ("[[B=A=GOOD]]", BOTH_GOOD),
    ("A>B", A_WINS),
    ("Verdict: B>A.", B_WINS),
    ('"A=B=Bad"', BOTH_BAD),
    ("[[A>B]] ... so, once more: [[A>B]]", A_WINS),
])
def test_verdicts_are_read_in_bracketed_and_plain_forms(answer, verdict):
    assert parse_verdict(answer) == verdict


@pytest.mark.parametrize("answer", [
    None, "", '{"score": 7}', "A is better than B", "[[A>A]]", "[[C>B]]", "[[A=B]]",
    "[[A>B]] no, wait: [[B>A]]",  # two different verdicts: no answer
    "Options are A>B, B>A, A=B=Good or A=B=Bad; I pick A>B",  # prose: a verdict only in brackets or alone
])
def test_anything_else_is_unparseable(answer):
    assert parse_verdict(answer) is None


def test_the_judge_parser_round_trips_each_verdict_and_refuses_the_rest():
    from editjudge.models.reward.parsing import ScoreParseError
    from editjudge.models.reward.results import ScoreResult

    parse = VerdictParser()
    for verdict in (A_WINS, B_WINS, BOTH_GOOD, BOTH_BAD):
        assert verdict_of(ScoreResult(score=parse(f"[[{verdict}]]"))) == verdict
    with pytest.raises(ScoreParseError, match="no verdict"):
        parse('{"score": 3}')
    assert verdict_of(ScoreResult.failure("unparseable")) is None
    assert parse.decided("so [[B>A]]") and not parse.decided("so [[B>")


# ------------------------------------------------------------------ both orders


def test_the_second_order_is_mapped_back_and_the_surviving_verdict_follows_the_rule():
    assert swap(A_WINS) == B_WINS and swap(BOTH_BAD) == BOTH_BAD and swap(None) is None
    # (A, B) says A; (B, A) shown says its second (= A) wins: consistent, A survives.
    assert combine(A_WINS, B_WINS) == {"verdict": A_WINS, "forward": A_WINS, "backward": A_WINS, "consistent": True}
    # The classic position flip: each order prefers its first shown edit -> a tie, Good (each picked a winner).
    assert combine(A_WINS, A_WINS) == {"verdict": BOTH_GOOD, "forward": A_WINS, "backward": B_WINS,
                                       "consistent": False}
    assert combine(B_WINS, BOTH_BAD)["verdict"] == BOTH_BAD  # one order found both bad
    assert combine(BOTH_GOOD, BOTH_BAD)["verdict"] == BOTH_BAD
    assert combine(BOTH_GOOD, BOTH_GOOD) == {"verdict": BOTH_GOOD, "forward": BOTH_GOOD, "backward": BOTH_GOOD,
                                             "consistent": True}
    assert combine(A_WINS, None) == {"verdict": None, "forward": A_WINS, "backward": None, "consistent": None}


def test_consistency_and_position_bias_on_hand_made_verdicts():
    # (forward as shown, backward as shown):
    shown = [(A_WINS, B_WINS),    # consistent A; first-shown picks: 1 of 2
             (A_WINS, A_WINS),    # flip: first shown both times: 2 of 2
             (B_WINS, A_WINS),    # consistent B; 1 of 2
             (BOTH_GOOD, A_WINS),  # inconsistent; only the backward picks (first): 1 of 1
             (A_WINS, None)]      # not compared; the forward still counts for position: 1 of 1
    records = [dict(combine(f, b), a="x", b="y") for f, b in shown]
    assert order_consistency(records) == {"rate": 2 / 4, "consistent": 2, "compared": 4}
    # decisive single-order answers: 2 + 2 + 2 + 1 + 1 = 8; first shown picked in 1 + 2 + 1 + 1 + 1 = 6
    assert position_bias(records) == {"value": 6 / 8 - 0.5, "first_preferred": 6, "decisive": 8}
    assert [r["verdict"] for r in records] == [A_WINS, BOTH_GOOD, B_WINS, BOTH_GOOD, None]
    assert win_rates(records) == [{"a": "x", "b": "y", "a_wins": 1, "b_wins": 1, "ties": 2, "null": 1,
                                   "a_win_rate": (1 + 2 / 2) / 4}]
    summary = summarize(records, source="pairwise")
    assert summary["verdicts"] == {A_WINS: 1, B_WINS: 1, BOTH_GOOD: 2, BOTH_BAD: 0, "null": 1}
    assert summary["pairs"] == 5 and summary["source"] == "pairwise"
    assert position_bias([])["value"] is None and order_consistency([])["rate"] is None


def test_pointwise_scores_give_verdicts_with_a_margin():
    assert pointwise_verdict(7.0, 6.0, margin=0.5, good=5.0) == A_WINS
    assert pointwise_verdict(6.0, 7.0, margin=0.5, good=5.0) == B_WINS
    assert pointwise_verdict(7.0, 6.6, margin=0.5, good=5.0) == BOTH_GOOD
    assert pointwise_verdict(7.0, 4.8, margin=0.5, good=5.0) == A_WINS
    assert pointwise_verdict(5.2, 4.8, margin=0.5, good=5.0) == BOTH_BAD  # a tie with one below good
    assert pointwise_verdict(7.0, 6.0, margin=1.0, good=5.0) == BOTH_GOOD  # exactly the margin: a tie
    assert pointwise_verdict(None, 6.0, margin=0.5, good=5.0) is None


# ------------------------------------------------------------------ several images before the edited one


def _sized(width: int, height: int, grey: int) -> Image.Image:
    return Image.new("RGB", (width, height), (grey, grey, grey))


def test_the_real_judge_gets_source_a_b_in_order(judge, monkeypatch):
    """A 3-image request through the real processor: the model receives three images (vision starts and
    image_grid_thw rows) in the order given, beside a 2-image and a 1-image request in the same batch; the
    estimated token counts match what the processor built."""
    source, first, second = _sized(32, 32, 20), _sized(64, 32, 120), _sized(32, 96, 220)
    seen = []
    real = judge.model.generate

    def spy(**kwargs):
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(judge.model, "generate", spy)
    results = judge.batch_evaluate([second, second, second], original_images=[(source, first), source, None],
                                   user_prompts="Which is better?", use_batch_inference=True, batch_size=3)
    (inputs,) = seen
    start = judge.model.config.vision_start_token_id
    assert [int((row == start).sum()) for row in inputs["input_ids"]] == [3, 2, 1]
    # Patches of 16 px: source 2x2, first (64x32) 2x4, second (32x96) 6x2; each request's images in order.
    assert inputs["image_grid_thw"].tolist() == [[1, 2, 2], [1, 2, 4], [1, 6, 2], [1, 2, 2], [1, 6, 2], [1, 6, 2]]
    assert len(results) == 3
    estimated = judge._estimated_lengths([second] * 3, [(source, first), source, None], [judge.system_prompt] * 3,
                                         ["Which is better?"] * 3)
    assert estimated == inputs["attention_mask"].sum(dim=1).tolist()


def test_a_list_before_the_edited_image_equals_a_single_source(judge):
    """A one-image tuple is the single source it holds: same messages, same answer."""
    source, edited = _sized(32, 32, 40), _sized(32, 32, 200)
    alone = judge.batch_evaluate([edited], original_images=[source])[0]
    listed = judge.batch_evaluate([edited], original_images=[(source,)])[0]
    assert (alone.raw_output, alone.error) == (listed.raw_output, listed.error)


def test_a_sampled_answer_is_seeded_by_the_images_shown_and_their_order():
    from editjudge.models.reward.sampling import item_key

    source, first, second = _sized(8, 8, 10), _sized(8, 8, 120), _sized(8, 8, 230)
    assert item_key("p", (source,), second) == item_key("p", source, second)  # as before for one source
    keys = {item_key("p", (source, first), second), item_key("p", (first, source), second),
            item_key("p", source, second), item_key("p", None, second), item_key("p", (source, second), first)}
    assert len(keys) == 5


def test_the_api_judge_sends_source_a_b_in_order_and_caches_by_images(tmp_path, monkeypatch):
    from editjudge.models.reward.openai_judge import OpenAIRewardModel

    monkeypatch.setenv("EDITJUDGE_TEST_KEY", "k")
    with FakeChat(lambda body: "[[B>A]]", model="m") as server:
        judge = OpenAIRewardModel(model="m", base_url=server.url, api_key_env="EDITJUDGE_TEST_KEY",
                                  cache_dir=str(tmp_path / "cache"), max_concurrent=1, show_progress=False)
        try:
            source, first, second = _sized(30, 20, 10), _sized(40, 20, 120), _sized(50, 20, 230)
            results = judge.batch_evaluate([second], original_images=[(source, first)], user_prompts="Which?",
                                           parse=VerdictParser())
            assert verdict_of(results[0]) == B_WINS
            assert sent_image_sizes(server.bodies[0]) == [(30, 20), (40, 20), (50, 20)]
            # The same request again comes from the cache; the same images in another order is another request.
            judge.batch_evaluate([second], original_images=[(source, first)], user_prompts="Which?",
                                 parse=VerdictParser())
            judge.batch_evaluate([first], original_images=[(source, second)], user_prompts="Which?",
                                 parse=VerdictParser())
            assert len(server.bodies) == 2 and judge.stats.cache_hits == 1
            assert sent_image_sizes(server.bodies[1]) == [(30, 20), (50, 20), (40, 20)]
        finally:
            judge.close()


# ------------------------------------------------------------------ editjudge pairwise, end to end


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, judge_path, precomputed_dir):
    """A finished run (edits and scores) of two precomputed editors on two items: ``bright`` (the
    precomputed fixture) and ``dark`` (each source at a tenth of its brightness)."""
    from PIL import ImageEnhance

    import yaml

    from editjudge.benchmark import load_benchmark
    from editjudge.config import load_config
    from editjudge.pipeline import run
    from tests.conftest import SAMPLE

    tmp = tmp_path_factory.mktemp("pairwise-run")
    (tmp / "dark").mkdir()
    for item in load_benchmark(SAMPLE)[:2]:
        ImageEnhance.Brightness(Image.open(item.image).convert("RGB")).enhance(0.1).save(tmp / "dark" / f"{item.id}.png")
    data = {"benchmark": {"path": str(SAMPLE), "limit": 2},
            "editing": {"devices": ["cpu"], "editors": [
                {"name": "bright", "type": "precomputed", "image_dir": str(precomputed_dir)},
                {"name": "dark", "type": "precomputed", "image_dir": str(tmp / "dark")}]},
            "reward_model": {"type": "qwen3_vl", "params": {"model_path": judge_path, "device": "cpu", "batch_size": 4,
                                                            "max_new_tokens": 12, "show_progress": False}},
            "output_dir": str(tmp / "out"), "seed": 0}
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(data))
    run(load_config(config_path), stage="all")
    return config_path, tmp / "out"


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairwise_command_judges_both_orders_then_from_scores_then_resumes(scored_run, capsys, monkeypatch):
    from editjudge.cli import main
    from editjudge.models.reward import judge as judge_module
    from editjudge.models.reward.parsing import parse_score

    config, out = scored_run
    assert main(["pairwise", "--config", str(config)]) == 0
    judged = _lines(out / "pairwise.jsonl")
    assert [(r["item_id"], r["a"], r["b"], r["source"]) for r in judged] == [
        ("color_material_001", "bright", "dark", "pairwise"), ("add_object_001", "bright", "dark", "pairwise")]
    for r in judged:
        # The tiny judge answers {"score": N}, N the brightness of the image in the edited image's place (the
        # last shown): no verdict, so null and counted, with both raw answers kept.
        assert (r["verdict"], r["forward"], r["backward"], r["consistent"], r["error"]) == (None,) * 5
        assert r["category"] and r["settings"] and r["inputs"]
        # Shown (source, bright, dark) the last image is dark; shown (source, dark, bright) it is bright.
        assert parse_score(r["raw"]["forward"], 0, 10) < parse_score(r["raw"]["backward"], 0, 10)
    summary = json.loads((out / "pairwise_summary.json").read_text())
    assert summary["verdicts"]["null"] == 2 and summary["answers"] == {"verdict": 0, "unparseable": 4, "failed": 0}
    assert summary["order_consistency"]["compared"] == 0 and summary["position_bias"]["value"] is None
    assert "order consistency: n/a" in capsys.readouterr().out

    assert main(["pairwise", "--config", str(config), "--from-scores", "--margin", "0.5"]) == 0
    scores = {(r["editor"], r["item_id"]): r["score"] for r in _lines(out / "scores.jsonl")}
    pointwise = _lines(out / "pairwise.jsonl")
    assert len(pointwise) == 2
    for r in pointwise:
        a, b = scores[("bright", r["item_id"])], scores[("dark", r["item_id"])]
        assert r["raw"] == {"score_a": a, "score_b": b} and r["margin"] == 0.5 and r["source"] == "pointwise"
        assert r["verdict"] == pointwise_verdict(a, b, 0.5, 5.0)
    assert [r["verdict"] for r in pointwise] == ["A>B", "A>B"]  # the bright edits score well above the dark ones
    summary = json.loads((out / "pairwise_summary.json").read_text())
    assert (summary["margin"], summary["good_threshold"], summary["source"]) == (0.5, 5.0, "pointwise")
    assert summary["win_rates"] == [{"a": "bright", "b": "dark", "a_wins": 2, "b_wins": 0, "ties": 0, "null": 0,
                                     "a_win_rate": 1.0}]

    # Judged again with the same settings: the judged lines come back from pairwise.previous.jsonl, no judge built.
    def no_judge(*args, **kwargs):
        raise AssertionError("judged again")

    monkeypatch.setattr(judge_module, "build_judge", no_judge)
    assert main(["pairwise", "--config", str(config)]) == 0
    assert _lines(out / "pairwise.jsonl") == judged
    # Another prompt length is another settings hash: the pairs are judged again.
    with pytest.raises(AssertionError, match="judged again"):
        main(["pairwise", "--config", str(config), "--set", "reward_model.params.max_new_tokens=8"])


def test_pairwise_command_mistakes_stop_with_status_2(scored_run, tmp_path, capsys):
    from editjudge.cli import main

    config, _ = scored_run
    assert main(["pairwise", "--config", str(config), "--editors", "bright"]) == 2
    assert main(["pairwise", "--config", str(config), "--editors", "bright,nobody"]) == 2
    assert main(["pairwise", "--config", str(config), "--margin", "1"]) == 2  # margin without --from-scores
    assert main(["pairwise", "--config", str(config), "--tie-band", "0.1"]) == 2  # a tie band without logits mode
    assert main(["pairwise", "--config", str(config), "--from-scores", "--output-dir", str(tmp_path / "none")]) == 2
    import yaml

    api = yaml.safe_load(config.read_text())
    api["reward_model"] = {"type": "openai", "params": {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                                        "response_format": "json_object"}}
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(api))
    assert main(["pairwise", "--config", str(tmp_path / "api.yaml")]) == 2
    err = capsys.readouterr().err
    assert "use response_format: none" in err
    assert "at least two editors" in err and "'nobody'" in err and "for --from-scores" in err
    assert "are for reward_model.params.score_mode: logits" in err and "run the score stage first" in err
