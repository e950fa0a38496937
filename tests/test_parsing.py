import pytest

from editjudge.models.reward.parsing import ScoreParseError, parse_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"score": 7}', 7.0),
        ('{"score": 7.5}', 7.5),
        ('{"score": "8"}', 8.0),
        ('{"Score": 3}', 3.0),
        ('The edit is convincing.\n```json\n{"score": 9}\n```', 9.0),
        ('Reasoning: the hat is red. {"reasoning": "ok", "score": 6} done', 6.0),
        ("Score: 7", 7.0),
        ("score = 4", 4.0),
        ("Rating: **5**", 5.0),
        ("I would give it 7/10.", 7.0),
        ("7 / 10", 7.0),
        ("This deserves 8 out of 10 overall.", 8.0),
        ("The colour is right but the edges are soft.\nFinal score: 6", 6.0),
        ("Colour 7/10, texture 5/10. Overall score is 6.", 6.0),
        ("The sky was changed as asked.\n8", 8.0),
        ("10", 10.0),
        ("0", 0.0),
        # The first JSON score is the answer and nothing after it is read (so stop_early cannot change it).
        ('{"score": 3} ... {"score": 8}', 3.0),
        ('{"score": 4}\nFinal score: 9', 4.0),
        ('<think>maybe {"score": 2}</think>\n{"score": 8}', 2.0),  # parse_score alone: see answer_text
    ],
)
def test_accepted_formats(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("The image looks good.", "no score"),
        ('{"quality": 7}', "no score"),
        ('{"score": 11}', "outside the range"),
        ("Score: -1", "outside the range"),
        ("12/10", "no score"),  # denominator matches but value out of range is caught below
        ("Score: 3. Later, score: 9.", "conflicting"),
        ("4/10 or maybe 6/10", "conflicting"),
        ("7/5", "no score"),
        ('{"score": true}', "no score"),
    ],
)
def test_rejected_answers(text, reason):
    with pytest.raises(ScoreParseError) as info:
        parse_score(text)
    if text == "12/10":
        assert "outside the range" in str(info.value)
    else:
        assert reason in str(info.value)


def test_custom_range():
    assert parse_score("Score: 4", low=1, high=5) == 4.0
    assert parse_score("4/5", low=1, high=5) == 4.0
    with pytest.raises(ScoreParseError, match="outside the range"):
        parse_score("Score: 0", low=1, high=5)
