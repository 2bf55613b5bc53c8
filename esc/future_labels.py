"""Future-oriented labels of real counselor replies: how the seeker's expressed state moved afterwards.

Pure Python (the affect scorer is VADER from the `vaderSentiment` package; no torch, no models).

Definitions, for one ESConv dialogue (turns in spoken order):
- A *seeker turn* is a maximal run of consecutive seeker utterances (ESConv seekers often split one
  message into several); its *affect* is VADER's compound polarity of the run's texts joined by a
  space, in [-1, 1] (-1 most negative, +1 most positive). VADER is a lexicon-and-rule sentiment scorer
  built for short social-media text (Hutto & Gilbert, ICWSM 2014); its lexicon ships with the package.
- A *labelled reply* is a counselor utterance at index t whose previous utterance (t - 1) is a seeker
  one. A counselor utterance that follows another counselor utterance gets no label of its own (it is
  part of the same counselor turn, whose first utterance carries the label).
- `before` = the affect of the seeker turn that ends at t - 1.
- `after` = the mean affect of the next k seeker turns that start after t (k = `future_turns`); when
  fewer than k follow, the mean of those that do. A reply with no seeker turn after it has no label.
- `future` = (after - before) / 2, in [-1, 1]: positive when the seeker's words grew more positive in
  the turns after the reply.
- `survey` = (initial - final emotion intensity) / 4, clipped to [-1, 1], when the dialogue has a
  seeker survey (the largest change on the 1-5 scale is 4).
- `label` = (1 - w) * future + w * survey with w = `survey_weight`; `label` = `future` without a survey.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from esc.schemas import Dialogue, Survey, Turn

Scorer = Callable[[str], float]


@lru_cache(maxsize=1)
def _analyzer():  # type: ignore[no-untyped-def]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def affect(text: str) -> float:
    """VADER compound polarity of `text`, in [-1, 1]; 0.0 for text without sentiment words."""
    return float(_analyzer().polarity_scores(text)["compound"])


@dataclass(frozen=True)
class ReplyLabel:
    """The label of the counselor utterance at `index` of a dialogue's turns (see the module doc)."""

    index: int
    before: float
    after: float
    n_after: int  # seeker turns averaged into `after` (1..k)
    future: float
    label: float


def seeker_turns(turns: Sequence[Turn]) -> list[tuple[int, int, str]]:
    """(first index, last index, joined text) of each maximal run of seeker utterances, in order."""
    runs: list[tuple[int, int, str]] = []
    start = None
    for i, turn in enumerate(list(turns) + [None]):  # type: ignore[list-item]
        is_seeker = turn is not None and turn.role == "seeker"
        if is_seeker and start is None:
            start = i
        elif not is_seeker and start is not None:
            runs.append((start, i - 1, " ".join(t.text.strip() for t in turns[start:i])))
            start = None
    return runs


def survey_improvement(survey: Survey) -> float:
    """(initial - final intensity) / 4, clipped to [-1, 1]."""
    return max(-1.0, min(1.0, (survey.initial_intensity - survey.final_intensity) / 4.0))


def future_labels(
    dialogue: Dialogue, future_turns: int, survey_weight: float = 0.0, scorer: Scorer = affect
) -> list[ReplyLabel]:
    """Labels of the dialogue's labelled replies that have at least one seeker turn after them.

    Args: `future_turns` k >= 1; `survey_weight` w in [0, 1]; `scorer` text -> affect in [-1, 1]
    (VADER by default; tests pass a fake). Returns: one `ReplyLabel` per such reply, in turn order.
    """
    if future_turns < 1 or not 0.0 <= survey_weight <= 1.0:
        raise ValueError("future_labels needs future_turns >= 1 and survey_weight in [0, 1]")
    turns = dialogue.turns
    runs = seeker_turns(turns)
    scores = [scorer(text) for _, _, text in runs]
    survey = survey_improvement(dialogue.survey) if dialogue.survey is not None else None
    labels = []
    for t in range(1, len(turns)):
        if turns[t].role != "counselor" or turns[t - 1].role != "seeker":
            continue
        current = next(k for k, (_, end, _) in enumerate(runs) if end == t - 1)
        following = scores[current + 1 : current + 1 + future_turns]
        if not following:
            continue
        after = sum(following) / len(following)
        future = (after - scores[current]) / 2.0
        label = future if survey is None else (1.0 - survey_weight) * future + survey_weight * survey
        labels.append(ReplyLabel(t, scores[current], after, len(following), future, label))
    return labels
