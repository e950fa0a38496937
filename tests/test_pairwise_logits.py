"""Pairwise preference probabilities in logits mode: the formulas on hand-made probabilities, the letters'
next-token probabilities through the real processor and the tiny real Qwen3-VL judge (equal to a manual
forward pass's softmax, both orders really shown differently), and ``editjudge pairwise`` with
``score_mode: logits`` end to end, its settings hash and its configuration mistakes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from editjudge.trust.pairwise import A_WINS, B_WINS, BOTH_GOOD
from editjudge.trust.pairwise_logits import (
    CHOICES, combine_probabilities, logits_summary, position_bias, probability_verdict,
)
from tests.protocol_fixtures import FakeChat, sent_image_sizes

# ------------------------------------------------------------------ formulas


def test_both_orders_combine_into_the_debiased_probability_and_its_verdict():
    line = combine_probabilities(0.70, 0.40, tie_band=0.05)  # backward: P(B shown first) = 0.4 -> P(A) = 0.6
    assert line["p_forward"] == pytest.approx(0.70) and line["p_backward"] == pytest.approx(0.60)
    assert line["probability"] == pytest.approx(0.65)
    assert (line["verdict"], line["forward"], line["backward"], line["consistent"]) == (A_WINS, A_WINS, A_WINS, True)
    # Each order prefers the edit shown first: inconsistent, and the bias cancels to a tie.
    flip = combine_probabilities(0.80, 0.80, tie_band=0.05)
    assert flip["probability"] == pytest.approx(0.5) and flip["consistent"] is False
    assert (flip["verdict"], flip["forward"], flip["backward"]) == (BOTH_GOOD, A_WINS, B_WINS)
    assert combine_probabilities(0.2, 0.9, 0.05)["verdict"] == B_WINS  # P(A) = (0.2 + 0.1) / 2 = 0.15
    assert combine_probabilities(0.5, 0.3, 0.05)["consistent"] is False  # 0.5 prefers neither edit
    missing = combine_probabilities(0.7, None, 0.05)
    assert (missing["verdict"], missing["probability"], missing["consistent"], missing["forward"]) == (
        None, None, None, A_WINS)


def test_the_tie_band_bounds_are_ties_and_beyond_them_a_winner():
    assert probability_verdict(0.55, 0.05) == BOTH_GOOD and probability_verdict(0.45, 0.05) == BOTH_GOOD
    assert probability_verdict(0.5501, 0.05) == A_WINS and probability_verdict(0.4499, 0.05) == B_WINS
    assert probability_verdict(0.5001, 0.0) == A_WINS and probability_verdict(None, 0.05) is None


def test_position_bias_and_summary_figures_on_hand_made_lines():
    lines = [dict(combine_probabilities(f, b, 0.05), a="x", b="y") for f, b in ((0.9, 0.3), (0.6, 0.6), (0.3, None))]
    # per pair (p_forward - p_backward) / 2: (0.9 - 0.7) / 2 = 0.1 and (0.6 - 0.4) / 2 = 0.1; the third has one order
    assert position_bias(lines) == {"value": pytest.approx(0.1), "pairs": 2}
    from editjudge.trust.pairwise import summarize

    summary = logits_summary(summarize(lines, source="pairwise"), lines, 0.05, 1e-6)
    assert (summary["score_mode"], summary["tie_band"], summary["min_letter_mass"]) == ("logits", 0.05, 1e-6)
    assert summary["order_consistency"] == {"rate": 0.5, "consistent": 1, "compared": 2}
    row = summary["win_rates"][0]
    # probabilities 0.8 (A>B, consistent) and 0.5 (a tie, inconsistent): one win, one tie, one without a verdict
    assert (row["a_wins"], row["ties"], row["null"]) == (1, 1, 1)
    assert row["mean_probability"] == pytest.approx(0.65)


# ------------------------------------------------------------------ the tiny real judge


def _sized(width: int, height: int, level: int) -> Image.Image:
    return Image.new("RGB", (width, height), (level, 255 - level, (3 * level) % 256))


def test_letter_probabilities_match_a_manual_forward_pass_and_the_orders_reach_the_model(logits_judge):
    from editjudge.models.reward.judge import judge_choices
    from editjudge.models.reward.logits import Choices

    source, first, second = _sized(64, 48, 20), _sized(64, 48, 200), _sized(64, 48, 110)
    shown = [(source, first, second), (source, second, first)]
    users = ["Which is better? A or B."] * 2
    # The tiny judge was made to answer {"score": N}: it puts almost nothing on "A" and "B", so under the
    # default least mass (1e-6) it gives no probability, the mass and shares kept in the raw line.
    refused = judge_choices(logits_judge, shown, "Compare.", users, CHOICES)
    assert not any(r.ok for r in refused) and all("no more than 1e-06" in r.error for r in refused)
    assert all(r.raw_output.startswith("logits: P(choices)=") and r.probabilities is None for r in refused)
    model = logits_judge.model
    received = []
    handle = model.register_forward_pre_hook(lambda m, args, kwargs: received.append(
        {k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}), with_kwargs=True)
    try:  # any mass above 0 counts: the renormalised letters, whatever the judge would rather say
        results = judge_choices(logits_judge, shown, "Compare.", users, Choices(CHOICES.texts, min_mass=0.0))
    finally:
        handle.remove()
    assert all(r.ok for r in results)
    assert [float(r.raw_output.split("=")[1].split()[0]) for r in results] == pytest.approx(
        [float(r.raw_output.split("=")[1].split()[0]) for r in refused], rel=1e-3)  # the same mass both times
    assert len(received) == 1  # one batch of both orders
    sent = received[0]
    # Three images per request, in the order shown: the grid of 6 images, and request 2's images 2 and 3 are
    # request 1's images 3 and 2.
    grids = sent["image_grid_thw"]
    assert grids.shape[0] == 6
    sizes = [int(g.prod()) for g in grids]
    chunks = list(torch.split(sent["pixel_values"], sizes))
    assert torch.equal(chunks[0], chunks[3]) and torch.equal(chunks[1], chunks[5]) and torch.equal(chunks[2], chunks[4])
    assert not torch.equal(chunks[1], chunks[4])
    image_token = model.config.image_token_id
    assert ((sent["input_ids"] == image_token).sum(dim=1) == (sum(sizes[:3]) // 4)).all()  # merge 2x2 per token

    ids = [logits_judge.processor.tokenizer(t, add_special_tokens=False)["input_ids"] for t in CHOICES.texts]
    assert all(len(i) == 1 for i in ids)
    ids = [i[0] for i in ids]
    for row, (images, result) in enumerate(zip(shown, results)):
        # The manual pass: the same chat template (nothing prefilled after the generation prompt), one request
        # alone, no padding; the last position's logits in float32, softmax, then the two letters renormalised.
        messages = [{"role": "system", "content": [{"type": "text", "text": "Compare."}]},
                    {"role": "user", "content": [{"type": "image", "image": im} for im in images]
                     + [{"type": "text", "text": "Which is better? A or B."}]}]
        text = logits_judge.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text.endswith("<|im_start|>assistant\n")
        inputs = logits_judge.processor(text=[text], images=list(images), return_tensors="pt")
        mask = sent["attention_mask"][row].bool()
        assert torch.equal(sent["input_ids"][row][mask], inputs["input_ids"][0])  # what the model received
        with torch.inference_mode():
            logits = model(**inputs).logits[0, -1].float()
        p = torch.softmax(logits, dim=-1)[ids].double()
        expected = (p / p.sum()).tolist()
        got = [result.probabilities[t] for t in CHOICES.texts]
        assert got == pytest.approx(expected, abs=1e-5)
        assert result.score == pytest.approx(got[0]) and sum(got) == pytest.approx(1.0)
        assert all(0 <= g <= 1 for g in got)
    # Other image orders, other answers.
    assert results[0].score != pytest.approx(results[1].score, abs=1e-7)


def test_choices_must_be_single_tokens_and_need_logits_mode(logits_judge, judge):
    from editjudge.models.reward.logits import Choices

    image = _sized(32, 32, 10)
    with pytest.raises(ValueError, match="one token"):  # " A" is two tokens for the tiny tokenizer
        logits_judge.batch_evaluate([image], choices=Choices((" A", " B")))
    with pytest.raises(ValueError, match="needs score_mode 'logits'"):
        judge.batch_evaluate([image], choices=CHOICES)


# ------------------------------------------------------------------ an API judge's top_logprobs


def _one_token_with(top: dict):
    """A ``FakeChat`` answer: one token, the most likely of ``top`` (token -> probability), with ``top`` as
    its top_logprobs."""
    def answer(body: dict) -> dict:
        listed = [{"token": t, "logprob": math.log(p)} for t, p in top.items()]
        return {"message": {"role": "assistant", "content": listed[0]["token"]}, "finish_reason": "length",
                "logprobs": {"content": [dict(listed[0], top_logprobs=listed)]}}
    return answer


def test_an_api_judge_reads_the_letters_from_top_logprobs_after_the_prefill(tmp_path, monkeypatch):
    from editjudge.models.reward.judge import judge_choices
    from editjudge.models.reward.openai_judge import OpenAIRewardModel

    monkeypatch.setenv("EDITJUDGE_TEST_KEY", "k")
    top: dict[str, float] = {}  # what the server lists as the answer's top_logprobs, set before each call
    with FakeChat(_one_token_with(top), model="m") as server:
        judge = OpenAIRewardModel(model="m", base_url=server.url, api_key_env="EDITJUDGE_TEST_KEY",
                                  score_mode="logits", cache_dir=str(tmp_path / "cache"), max_concurrent=1,
                                  show_progress=False)
        try:
            source, first, second = _sized(30, 20, 10), _sized(40, 20, 120), _sized(50, 20, 230)
            top.update({"A": 0.6, "B": 0.2, "The": 0.1})
            result, = judge_choices(judge, [(source, first, second)], "Compare.", ["Which? 1"], CHOICES)
            assert result.probabilities == pytest.approx({"A": 0.75, "B": 0.25})
            assert result.score == pytest.approx(0.75)
            assert result.raw_output.startswith("logits: P(choices)=0.8 ")
            body = server.bodies[0]
            # Nothing to prefill: the answer's first token after the generation prompt, no assistant turn to continue.
            assert body["messages"][-1]["role"] == "user" and "continue_final_message" not in body
            assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
            assert sent_image_sizes(body) == [(30, 20), (40, 20), (50, 20)]
            top.clear()
            top.update({"A": 0.5, "The": 0.3})  # "B" below the listed tokens: probability 0
            result, = judge_choices(judge, [(source, first, second)], "Compare.", ["Which? 2"], CHOICES)
            assert result.probabilities == pytest.approx({"A": 1.0, "B": 0.0})
            top.clear()
            top.update({"The": 0.9, "An": 0.05})  # neither letter: no probability
            result, = judge_choices(judge, [(source, first, second)], "Compare.", ["Which? 3"], CHOICES)
            assert not result.ok and "on the choices" in result.error
        finally:
            judge.close()


# ------------------------------------------------------------------ editjudge pairwise --score_mode logits


@pytest.fixture(scope="module")
def edited_run(tmp_path_factory, judge_path, precomputed_dir):
    """A run with its edits (no scores) of two precomputed editors on two items, the judge in logits mode."""
    from PIL import ImageEnhance

    import yaml

    from editjudge.benchmark import load_benchmark
    from editjudge.config import load_config
    from editjudge.pipeline import run
    from tests.conftest import SAMPLE

    tmp = tmp_path_factory.mktemp("pairwise-logits")
    (tmp / "dark").mkdir()
    for item in load_benchmark(SAMPLE)[:2]:
        ImageEnhance.Brightness(Image.open(item.image).convert("RGB")).enhance(0.1).save(tmp / "dark" / f"{item.id}.png")
    data = {"benchmark": {"path": str(SAMPLE), "limit": 2},
            "editing": {"devices": ["cpu"], "editors": [
                {"name": "bright", "type": "precomputed", "image_dir": str(precomputed_dir)},
                {"name": "dark", "type": "precomputed", "image_dir": str(tmp / "dark")}]},
            "reward_model": {"type": "qwen3_vl", "params": {"model_path": judge_path, "device": "cpu", "batch_size": 4,
                                                            "score_mode": "logits", "show_progress": False}},
            "output_dir": str(tmp / "out"), "seed": 0}
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(data))
    run(load_config(config_path), stage="edit")
    return config_path, tmp / "out"


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairwise_logits_command_reports_the_documented_figures(edited_run, logits_judge, capsys, monkeypatch):
    from editjudge.cli import main
    from editjudge.models.reward import judge as judge_module
    from editjudge.models.reward.judge import judge_choices
    from editjudge.models.reward.prompts import fill_prompt
    from editjudge.trust import pairwise_logits
    from editjudge.trust.pairwise_run import SYSTEM_PROMPT

    config, out = edited_run
    # The default least letter mass: the tiny judge answers digits, not letters, so no order has a probability.
    assert main(["pairwise", "--config", str(config)]) == 0
    refused = _lines(out / "pairwise.jsonl")
    assert [(r["verdict"], r["probability"], r["p_forward"], r["consistent"], r["error"]) for r in refused] == [
        (None,) * 5] * 2
    summary = json.loads((out / "pairwise_summary.json").read_text())
    assert summary["answers"] == {"verdict": 0, "unparseable": 4, "failed": 0}
    assert summary["position_bias"] == {"value": None, "pairs": 0} and summary["min_letter_mass"] == 1e-6
    capsys.readouterr()

    run = ["pairwise", "--config", str(config), "--min-letter-mass", "0"]  # another settings hash: judged again
    assert main(run) == 0
    lines = _lines(out / "pairwise.jsonl")
    assert lines[0]["settings"] != refused[0]["settings"]
    assert [(r["item_id"], r["a"], r["b"]) for r in lines] == [
        ("color_material_001", "bright", "dark"), ("add_object_001", "bright", "dark")]
    manifest = {(r["editor"], r["item_id"]): out / r["image"] for r in _lines(out / "edits" / "manifest.jsonl")}
    from editjudge.benchmark import load_benchmark
    from tests.conftest import SAMPLE

    items = {item.id: item for item in load_benchmark(SAMPLE)[:2]}
    for r in lines:
        # The same two requests asked directly of the judge give the line's per-order probabilities.
        item = items[r["item_id"]]
        a, b = manifest[("bright", item.id)], manifest[("dark", item.id)]
        users = [fill_prompt(pairwise_logits.USER_PROMPT, item.instruction)] * 2
        forward, backward = judge_choices(logits_judge, [(item.image, a, b), (item.image, b, a)], SYSTEM_PROMPT,
                                          users, pairwise_logits.letters(0.0))
        assert r["p_forward"] == pytest.approx(forward.probabilities["A"], abs=1e-6)
        assert r["p_backward"] == pytest.approx(backward.probabilities["B"], abs=1e-6)  # B shown second is A
        assert r["probability"] == pytest.approx((r["p_forward"] + r["p_backward"]) / 2)
        assert r["verdict"] == probability_verdict(r["probability"], 0.05) and r["tie_band"] == 0.05
        assert r["consistent"] == ((r["p_forward"] - 0.5) * (r["p_backward"] - 0.5) > 0)
        assert r["source"] == "pairwise" and r["error"] is None and "P(choices)=" in r["raw"]["forward"]
    summary = json.loads((out / "pairwise_summary.json").read_text())
    assert summary["score_mode"] == "logits" and summary["answers"] == {"verdict": 4, "unparseable": 0, "failed": 0}
    biases = [(r["p_forward"] - r["p_backward"]) / 2 for r in lines]
    assert summary["position_bias"] == {"value": pytest.approx(sum(biases) / 2), "pairs": 2}
    flags = [r["consistent"] for r in lines]
    assert summary["order_consistency"] == {"rate": sum(flags) / 2, "consistent": sum(flags), "compared": 2}
    assert summary["win_rates"][0]["mean_probability"] == pytest.approx(sum(r["probability"] for r in lines) / 2)
    assert "mean P(first shown) - 0.5 over 2 pairs" in capsys.readouterr().out

    # The same settings: kept, no judge built. Another tie band is another settings hash: judged again.
    def no_judge(*args, **kwargs):
        raise AssertionError("judged again")

    monkeypatch.setattr(judge_module, "build_judge", no_judge)
    assert main(run) == 0
    assert _lines(out / "pairwise.jsonl") == lines
    with pytest.raises(AssertionError, match="judged again"):
        main(run + ["--tie-band", "0.2"])


def test_pairwise_logits_mistakes_stop_with_status_2(edited_run, tmp_path, capsys, monkeypatch):
    import yaml

    from editjudge.cli import main
    from editjudge.models.reward.openai_judge import OpenAIRewardModel

    # A backend that cannot read the letters' probabilities (as the API judge would without reads_choices).
    monkeypatch.setattr(OpenAIRewardModel, "reads_choices", False)

    config, _ = edited_run
    assert main(["pairwise", "--config", str(config), "--tie-band", "0.5"]) == 2
    api = yaml.safe_load(config.read_text())
    api["reward_model"] = {"type": "openai", "params": {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                                        "score_mode": "logits"}}
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(api))
    assert main(["pairwise", "--config", str(tmp_path / "api.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--tie-band must be at least 0 and below 0.5" in err
    assert "the 'openai' judge cannot give a preference probability" in err
