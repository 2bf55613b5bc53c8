"""The reward model's hand-made scalar features of a (context, seeker's last turn, reply): pure text
functions, no model. `learner.reward_model`'s module doc says what each one is for and how it was chosen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from esc.future_labels import affect
from esc.schemas import Turn

SCALARS = 18  # how many `scalars` returns
CONTEXT_TURNS = 6  # turns whose content words the context-overlap scalar reads
LENGTH_CAP = 15  # words: the median ESConv counselor reply (train split, 12,759 replies)
GREETINGS = ("hello", "hi ", "hi,", "hi!", "hey", "good morning", "good afternoon", "good evening")
FAREWELLS = ("bye", "take care", "good luck", "you're welcome", "you are welcome", "all the best")
_WORD = re.compile(r"[a-z']+")


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 4}


def scalars(
    context: Sequence[Turn], seeker: str, reply: str, cosine: float, gain: tuple[float, float]
) -> list[float]:
    """The SCALARS hand-made features of one (context, seeker's last turn, reply), in the order of the
    `learner.reward_model` module doc."""
    seeker_words, reply_words = content_words(seeker), content_words(reply)
    recent = set().union(*(content_words(t.text) for t in context[-CONTEXT_TURNS:]))
    shared = len(seeker_words & reply_words)
    stage = len(context) / 20.0
    low = reply.strip().lower()
    greets = float(low.startswith(GREETINGS))
    farewell = float(any(f in low for f in FAREWELLS))
    asks = float("?" in low)
    return [
        cosine,
        shared / max(1, len(reply_words)),
        shared / max(1, len(seeker_words)),
        len(recent & reply_words) / max(1, len(reply_words)),
        min(len(reply.split()), LENGTH_CAP) / LENGTH_CAP,
        float(not low),
        affect(seeker),
        affect(reply),
        stage,
        greets,
        greets * stage,
        farewell,
        farewell * stage,
        asks,
        asks * stage,
        float(bool(low) and low == seeker.strip().lower()),
        math.copysign(math.log1p(abs(gain[0])), gain[0]),
        gain[1],
    ]
