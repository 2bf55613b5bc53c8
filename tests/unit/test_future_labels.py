"""Future-oriented reply labels on hand-made dialogues; values checked by hand with a fake affect scorer.

The fake scorer reads a number written in the seeker's text ("s=0.4"), so every label below is simple
arithmetic; one test checks that the real scorer (VADER) orders plainly negative and positive text.
"""

import re

import pytest

from esc.future_labels import affect, future_labels, seeker_turns, survey_improvement
from esc.schemas import Dialogue, Scenario, Survey, Turn


def fake_scorer(text: str) -> float:
    """Mean of the 's=<number>' values in `text` (joined runs hold several)."""
    values = [float(v) for v in re.findall(r"s=(-?[0-9.]+)", text)]
    return sum(values) / len(values)


def make(roles_texts: list[tuple[str, str]], survey: tuple[int, int] | None = (5, 2)) -> Dialogue:
    return Dialogue(
        id="d",
        scenario=Scenario(id="s", emotion_type="sadness", problem_type="work", situation="x"),
        turns=tuple(Turn(role=role, text=text) for role, text in roles_texts),
        survey=Survey(initial_intensity=survey[0], final_intensity=survey[1]) if survey else None,
        source="esconv",
    )


DIALOGUE = [
    ("seeker", "s=-0.6"),  # 0: run A
    ("counselor", "c1"),  # 1: labelled (after A)
    ("seeker", "s=-0.2"),  # 2: run B
    ("counselor", "c2"),  # 3: labelled (after B)
    ("counselor", "c3"),  # 4: consecutive counselor turn: no label of its own
    ("seeker", "s=0.2"),  # 5: run C, two utterances joined
    ("seeker", "s=0.4"),  # 6
    ("counselor", "c4"),  # 7: labelled (after C); only run D follows
    ("seeker", "s=0.8"),  # 8: run D
    ("counselor", "c5"),  # 9: last reply, no seeker turn after it: no label
]


def test_seeker_turns_join_consecutive_seeker_utterances():
    runs = seeker_turns(make(DIALOGUE).turns)
    assert runs == [(0, 0, "s=-0.6"), (2, 2, "s=-0.2"), (5, 6, "s=0.2 s=0.4"), (8, 8, "s=0.8")]


def test_labels_with_k_2_and_no_survey_blend():
    labels = future_labels(make(DIALOGUE), future_turns=2, survey_weight=0.0, scorer=fake_scorer)
    assert [label.index for label in labels] == [1, 3, 7]  # c3 follows a counselor turn, c5 has no future
    first, second, third = labels
    # c1: before A = -0.6; after = mean(B, C) = mean(-0.2, 0.3) = 0.05; future = (0.05 + 0.6) / 2
    assert (first.before, first.after, first.n_after) == pytest.approx((-0.6, 0.05, 2))
    assert first.future == pytest.approx(0.325) and first.label == pytest.approx(0.325)
    # c2: before B = -0.2; after = mean(C, D) = mean(0.3, 0.8) = 0.55; future = 0.375
    assert (second.after, second.future) == pytest.approx((0.55, 0.375))
    # c4: before C = 0.3; only D follows (fewer than k): after = 0.8; future = 0.25
    assert (third.before, third.after, third.n_after, third.future) == pytest.approx((0.3, 0.8, 1, 0.25))


def test_survey_blend_weights_the_dialogues_improvement():
    assert survey_improvement(Survey(initial_intensity=5, final_intensity=2)) == 0.75
    assert survey_improvement(Survey(initial_intensity=1, final_intensity=5)) == -1.0
    labels = future_labels(make(DIALOGUE, (5, 2)), future_turns=1, survey_weight=0.5, scorer=fake_scorer)
    # c1 with k=1: after = B = -0.2, future = 0.2; label = 0.5 * 0.2 + 0.5 * 0.75
    assert labels[0].future == pytest.approx(0.2) and labels[0].label == pytest.approx(0.475)
    unsurveyed = future_labels(make(DIALOGUE, None), future_turns=1, survey_weight=0.5, scorer=fake_scorer)
    assert [label.label for label in unsurveyed] == pytest.approx([label.future for label in labels])


def test_dialogues_without_a_future_give_no_labels_and_bad_settings_are_refused():
    assert future_labels(make([("counselor", "hi"), ("seeker", "s=0.1")]), 3, scorer=fake_scorer) == []
    assert future_labels(make([("seeker", "s=0.1"), ("counselor", "hi")]), 3, scorer=fake_scorer) == []
    with pytest.raises(ValueError, match="future_turns"):
        future_labels(make(DIALOGUE), 0)
    with pytest.raises(ValueError, match="survey_weight"):
        future_labels(make(DIALOGUE), 2, survey_weight=1.5)


def test_vader_scores_plain_negative_below_plain_positive():
    sad, glad = affect("I feel terrible, hopeless and alone."), affect("Thank you, I feel much better now!")
    assert -1.0 <= sad < 0.0 < glad <= 1.0
    assert affect("The meeting is on Tuesday.") == 0.0
