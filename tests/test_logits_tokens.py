"""Logits mode reads every score the way the judge's tokenizer writes it: a one-token "10" counts.

Qwen's tokenizers write "10" as "1" then "0" (P(10) = P("1") P("0" | "1")); a tokenizer with a
token "10" of its own puts the judge's probability of 10 on it, which must count as well; a
tokenizer that writes "10" any other way is refused at load. Checked with the tiny judge's real
tokenizer and variants of it, through the transformers judge on the tiny judge given a "10" token,
and with crafted top_logprobs for the OpenAI/vLLM path.
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from editjudge.models.reward.logits import ScoreTokens, expected_scores, score_tokens
from editjudge.models.reward.openai_judge import OpenAIRewardModel


@pytest.fixture
def tokenizer(judge_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(judge_path)


def digits_of(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]


def test_qwens_tokenizer_writes_ten_as_one_then_zero(tokenizer):
    assert score_tokens(tokenizer, 0, 10) == ScoreTokens(digits_of(tokenizer), None)


def test_a_one_token_ten_counts_for_ten(tokenizer):
    tokenizer.add_tokens(["10"])
    tokens = score_tokens(tokenizer, 0, 10)
    assert tokens.ten == tokenizer.convert_tokens_to_ids("10") and tokens.digits == digits_of(tokenizer)
    assert score_tokens(tokenizer, 1, 5).ten is None  # a range below 10 never reads it
    logits = torch.full((1, 2, len(tokenizer)), -math.inf)
    logits[0, 0, tokens.ten], logits[0, 0, tokens.digits[9]] = math.log(0.9), math.log(0.1)
    logits[0, 1, tokens.digits[0]] = 0.0  # P("0" | "1"): no weight, P("1") is 0
    assert expected_scores(logits, tokens.digits, 0, 10, tokens.ten)[0].score == pytest.approx(9.9)
    assert expected_scores(logits, tokens.digits, 0, 10)[0].score == pytest.approx(9.0)  # what was read before


def test_a_bpe_that_merges_ten_and_a_wordpiece_that_writes_it_otherwise():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    digits = {str(d): d for d in range(10)}
    bpe = Tokenizer(models.BPE(vocab={**digits, "10": 10}, merges=[("1", "0")]))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    assert score_tokens(PreTrainedTokenizerFast(tokenizer_object=bpe), 0, 10) == ScoreTokens(list(range(10)), 10)
    # WordPiece writes "10" as "1", "##0": not the digit "0" that logits mode reads after "1".
    wordpiece = Tokenizer(models.WordPiece(vocab={"[UNK]": 10, **digits, **{f"##{d}": 11 + d for d in range(10)}},
                                           unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(ValueError, match=r"""writes "10" as \['1', '##0'\]"""):
        score_tokens(PreTrainedTokenizerFast(tokenizer_object=wordpiece), 0, 10)
    assert score_tokens(PreTrainedTokenizerFast(tokenizer_object=wordpiece), 0, 9).ten is None  # 10 not read


@pytest.fixture(scope="module")
def judge_with_a_ten_token(judge_path, tmp_path_factory):
    """The tiny judge, its tokenizer given a token "10" whose embedding and output rows are those of "9"
    (so P("10") = P("9") wherever the judge reads a score)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tmp_path_factory.mktemp("judge-ten")
    processor = AutoProcessor.from_pretrained(judge_path)
    processor.tokenizer.add_tokens(["10"])
    model = AutoModelForImageTextToText.from_pretrained(judge_path, dtype=torch.float32)
    model.resize_token_embeddings(len(processor.tokenizer))
    ten, nine = processor.tokenizer.convert_tokens_to_ids(["10", "9"])
    with torch.no_grad():
        for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            matrix[ten] = matrix[nine]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder), ten, nine


def test_the_transformers_judge_counts_a_one_token_ten(judge_with_a_ten_token):
    from editjudge.models.reward import Qwen3VLRewardModel

    folder, ten, nine = judge_with_a_ten_token
    judge = Qwen3VLRewardModel(folder, score_mode="logits", show_progress=False)
    assert judge._ten_id == ten
    seen = []
    handle = judge.model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.append(out.float()))
    try:
        result = judge.batch_evaluate([Image.new("RGB", (64, 64), (230, 230, 230))])[0]
    finally:
        handle.remove()
    (logits,) = seen
    first, second = torch.softmax(logits[0, -2], -1), torch.softmax(logits[0, -1], -1)
    digits = judge._digit_ids
    assert first[ten] == pytest.approx(float(first[nine]), rel=1e-5) and float(first[ten]) > 0.01
    q = float(second[digits[0]])  # P("0" | "1")

    def mean(p_ten_token: float) -> float:
        weights = {d: float(first[digits[d]]) for d in range(10)}
        weights[1], weights[10] = weights[1] * (1 - q), weights[1] * q + p_ten_token
        return sum(v * w for v, w in weights.items()) / sum(weights.values())

    assert result.score == pytest.approx(mean(float(first[ten])), abs=1e-5)
    assert result.score - mean(0.0) > 0.01  # P("10") dropped reads a lower score


def test_a_tokenizer_that_does_not_match_the_model_is_refused_at_load(judge_path, tmp_path):
    from transformers import AutoProcessor

    from editjudge.models.reward import Qwen3VLRewardModel

    folder = tmp_path / "judge"
    folder.mkdir()
    for path in __import__("pathlib").Path(judge_path).iterdir():
        (folder / path.name).symlink_to(path)
    processor = AutoProcessor.from_pretrained(judge_path)
    processor.tokenizer.add_tokens(["10"])  # id 887; the model has 887 output rows
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    processor.tokenizer.save_pretrained(folder)
    with pytest.raises(ValueError, match=r"score token ids \[887\] are beyond the model's 887 output logits"):
        Qwen3VLRewardModel(str(folder), score_mode="logits", show_progress=False)


def top(entries: dict[str, float]) -> dict:
    return {"choices": [{"logprobs": {"content": [{"top_logprobs": [
        {"token": token, "logprob": math.log(p)} for token, p in entries.items()]}]}}]}


def test_the_openai_logits_path_counts_a_ten_in_top_logprobs(monkeypatch):
    judge = OpenAIRewardModel("m", base_url="http://127.0.0.1:9/v1", score_mode="logits")
    answers = {'{"score": ': top({"10": 0.9, "9": 0.1}), '{"score": 1': top({"0": 0.5, "}": 0.5})}
    monkeypatch.setattr(judge.client, "post", lambda path, body: answers[body["messages"][-1]["content"]])
    result = judge.batch_evaluate([Image.new("RGB", (32, 32))])[0]
    assert result.score == pytest.approx(9.9)
    answers['{"score": '] = top({"10": 0.5, "1": 0.3, "7": 0.2})  # "1": 1 or, with P("0" | "1") = 0.5, 10
    assert judge.batch_evaluate([Image.new("RGB", (32, 32))])[0].score == pytest.approx(
        (10 * 0.5 + 1 * 0.15 + 10 * 0.15 + 7 * 0.2) / 1.0)
