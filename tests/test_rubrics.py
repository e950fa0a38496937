"""Rubrics as data: multi-field parsing, validation, safe combination, and the viescore scheme."""

from __future__ import annotations

import math

import pytest

from editjudge.models.reward.parsing import ScoreParseError, parse_fields
from editjudge.models.reward.results import ScoreResult
from editjudge.models.reward.rubrics import BUILTIN, evaluate, get_rubric, rubric_problems, score_with_rubric


def test_parse_fields_accepts_json_viescore_lists_and_labels():
    fields = ["editing_success", "over_editing"]
    assert parse_fields('{"editing_success": 8, "over_editing": "6"}', fields) == {"editing_success": 8, "over_editing": 6}
    assert parse_fields('Sure.\n```json\n{"score": [7, 3], "reasoning": "ok"}\n```', fields) == \
        {"editing_success": 7, "over_editing": 3}
    assert parse_fields("Editing success: 9\nover_editing = 4", fields) == {"editing_success": 9, "over_editing": 4}
    assert parse_fields('{"Naturalness": 5, "ARTIFACTS": 2}', ["naturalness", "artifacts"]) == \
        {"naturalness": 5, "artifacts": 2}
    # The first complete JSON object is the answer: what follows it is not read.
    assert parse_fields('{"editing_success": 8, "over_editing": 2} then {"editing_success": 5, "over_editing": 2}',
                        fields) == {"editing_success": 8, "over_editing": 2}


@pytest.mark.parametrize("text, message", [
    ('{"editing_success": 8}', "no value for ['over_editing']"),
    ('{"editing_success": 8, "over_editing": 11}', "over_editing 11 outside the range"),
    ("editing_success: 8\nover_editing: 2\nediting_success: 5", "conflicting"),
    ("", "empty answer"),
    ('{"score": 7}', "no value for"),  # a single score is not two sub-scores: never guessed
])
def test_parse_fields_fails_instead_of_guessing(text, message):
    with pytest.raises(ScoreParseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_fields(text, ["editing_success", "over_editing"])


def test_builtin_rubrics_are_valid_and_viescore_combines_like_gedit():
    for name in BUILTIN:
        assert rubric_problems(name) == []
    viescore = get_rubric("viescore")
    assert [p.name for p in viescore.prompts] == ["semantics", "quality"]
    assert viescore.prompts[0].with_source and not viescore.prompts[1].with_source
    values = {"editing_success": 8.0, "over_editing": 4.0, "naturalness": 9.0, "artifacts": 1.0}
    for name, expression in viescore.combine:
        values[name] = evaluate(expression, values)
    assert values["SC"] == 4.0 and values["PQ"] == 1.0 and values["overall"] == pytest.approx(2.0)  # sqrt(4 * 1)


def test_custom_rubric_problems_are_all_named():
    spec = {
        "name": "mine", "colour": 1,
        "prompts": [{"name": "a", "user_prompt": "x", "fields": ["f", "g"]},
                    {"name": "b", "user_prompt": "", "fields": ["g"]},
                    {"name": "c", "user_prompt": "y", "fields": "h"}],
        "combine": {"bad_call": "__import__('os')", "attr": "f.real", "unknown": "min(f, zz)", "ok": "mean(f, g) ** 2"},
        "score": "nope",
    }
    problems = "\n".join(rubric_problems(spec))
    for expected in ["unknown keys ['colour']", "prompts[1].user_prompt", "prompts[1].fields: ['g'] already given",
                     "prompts[2].fields", "bad_call", "only ['max', 'mean', 'min', 'sqrt'] may be called",
                     "attr: 'f.real': Attribute not allowed", "unknown name 'zz'", "rubric.score: 'nope'"]:
        assert expected in problems, expected
    assert "combine.ok" not in problems
    assert rubric_problems("nonsense") and rubric_problems(3)


class FakeJudge:
    """Answers each prompt from a table keyed by (prompt name, item index); records what it was asked."""

    score_range = (0.0, 10.0)
    system_prompt = "default system"

    def __init__(self, answers: dict):
        self.answers = answers
        self.calls = []

    def batch_evaluate(self, edited_images, system_prompts=None, user_prompts=None, original_images=None, parse=None):
        name = "semantics" if "two pictures" in user_prompts[0] else "quality"
        self.calls.append((name, list(user_prompts), original_images))
        results = []
        for i, _ in enumerate(edited_images):
            text = self.answers[(name, i)]
            try:
                results.append(ScoreResult(score=parse(text), raw_output=text))
            except ScoreParseError as exc:
                results.append(ScoreResult.failure(str(exc), raw_output=text))
        return results


def test_score_with_rubric_runs_each_prompt_batched_and_keeps_every_sub_score():
    judge = FakeJudge({
        ("semantics", 0): '{"editing_success": 9, "over_editing": 4}', ("quality", 0): '{"naturalness": 9, "artifacts": 9}',
        ("semantics", 1): '{"editing_success": 6, "over_editing": 8}', ("quality", 1): "I cannot tell.",
    })
    results = score_with_rubric(judge, get_rubric("viescore"), ["e0", "e1"], ["make it red", "add a hat"], ["s0", "s1"])
    assert [c[0] for c in judge.calls] == ["semantics", "quality"]  # one batched call per prompt
    assert judge.calls[0][2] == ["s0", "s1"] and judge.calls[1][2] is None  # source only where the rubric says
    assert 'instruction "make it red"' in judge.calls[0][1][0]
    first, second = results
    assert first.error is None and first.score == pytest.approx(math.sqrt(4 * 9))
    assert first.sub_scores == {"editing_success": 9, "over_editing": 4, "naturalness": 9, "artifacts": 9,
                                "SC": 4, "PQ": 9, "overall": pytest.approx(6.0)}
    assert first.raw_outputs["quality"] == '{"naturalness": 9, "artifacts": 9}'
    # An unparseable answer fails the item, keeps the sub-scores that were read, and never invents the rest.
    assert second.score is None and second.error.startswith("quality:")
    assert second.sub_scores["editing_success"] == 6 and second.sub_scores["naturalness"] is None
    assert second.sub_scores["overall"] is None and second.raw_outputs["quality"] == "I cannot tell."


@pytest.mark.parametrize("expression, error", [
    ("10 / (success - success)", "combine bad: '10 / (success - success)' failed for this item's values "
                                 "(ZeroDivisionError: float division by zero)"),
    ("sqrt(0 - 1 - success)", "(ValueError: math domain error)"),
    ("9 ** 9 ** 9", "(OverflowError: (34, 'Numerical result out of range'))"),
    ("success * 1e308 * 10", "(ValueError: the result is inf, not a finite number)"),
])
def test_a_combine_that_fails_at_run_time_is_that_items_error(expression, error):
    """The same for the job and the server: both score through ``judge_items``."""
    from editjudge.pipeline import judge_items

    spec = {"name": "r", "prompts": [{"name": "quality", "user_prompt": 'Answer {"success": N}.',
                                      "fields": ["success"]}],
            "combine": {"bad": expression}, "score": "bad"}
    assert rubric_problems(spec) == []
    judge = FakeJudge({("quality", 0): '{"success": 3}', ("quality", 1): '{"success": 7}'})
    judge.compare_with_original = False
    results = judge_items(judge, get_rubric(spec), ["e0", "e1"], ["x", "y"], ["s0", "s1"])
    for result in results:
        assert result["score"] is None and result["failed_stage"] == "score" and error in result["error"]
        assert result["sub_scores"]["success"] in (3, 7) and result["sub_scores"]["bad"] is None


@pytest.mark.parametrize("expression, problem", [
    ("-" * 990 + "1", "nests too deeply"),
    ("(" * 300 + "1" + ")" * 300, "is not an expression (too many nested parentheses)"),
    ("1" + " + 1" * 100_000, "is over 1,000 characters"),
    ("1" + "+1" * 400, "nests too deeply (at most 50 levels)"),
    ("min(" * 60 + "1" + ")" * 60, "nests too deeply (at most 50 levels)"),
])
def test_a_very_deep_combine_expression_is_a_configuration_problem(expression, problem):
    spec = {"name": "r", "prompts": [{"name": "q", "user_prompt": "x", "fields": ["score"]}],
            "combine": {"deep": expression}, "score": "deep"}
    problems = rubric_problems(spec)
    assert len(problems) == 1 and problem in problems[0] and len(problems[0]) < 300, problems
