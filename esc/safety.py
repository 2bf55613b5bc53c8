"""Crisis-safety check for seeker messages: the lexicon and the crisis reply.

Owns: the check over the crisis lexicon (`esc/safety_lexicon.py`: regex phrases in the Columbia
Suicide Severity Rating Scale's categories, plus self-harm, abuse, threats and danger to others), a guard
for idioms and denials that would otherwise trigger, and the per-region crisis resources used by
`crisis_reply`. The optional model-based classifier that runs
after the lexicon is in `esc/safety_model.py`; the counselor combines the two (`Counselor.is_crisis`).

It runs on every seeker/user message of the recent conversation (`check_conversation`) before a
counselor reply is generated or served: a crisis said two messages ago is still a crisis. It is a safety
net, not a diagnosis: it errs towards flagging (a false alarm costs one resource message; a miss can
cost a life), and it says nothing about a person's state beyond "this message needs a crisis reply".
It does not know about models, Ray, training or serving; it is plain Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from esc.safety_lexicon import BENIGN, JOKE, LEXICON

__all__ = ["CRISIS_RESOURCES", "SafetyResult", "check_conversation", "check_message", "crisis_reply"]

CATEGORIES: tuple[str, ...] = tuple(LEXICON)
_COMPILED = {category: tuple(re.compile(p) for p in patterns) for category, patterns in LEXICON.items()}
_BENIGN_COMPILED = tuple(re.compile(p) for p in BENIGN)
_JOKE = re.compile(JOKE)
# Apostrophe-less contractions of "I": "im", "ive", "ill", "id" (not "ill" the adjective after "feel").
_BARE_I = re.compile(r"\bi(m|ve|d)\b|\bi(ll)\b(?<!feel ill)")
OTHERS = "harm_to_others"  # the one category a joke ("lol") in the same message cancels

CRISIS_RESOURCES: dict[str, tuple[str, ...]] = {
    "us": ("988 Suicide & Crisis Lifeline: call or text 988", "Emergency services: 911"),
    "ca": ("9-8-8 Suicide Crisis Helpline: call or text 988", "Emergency services: 911"),
    "uk": ("Samaritans: call 116 123 (free, any time)", "Emergency services: 999 or 112"),
    "ie": ("Samaritans: call 116 123 (free, any time)", "Emergency services: 112 or 999"),
    "au": ("Lifeline: call 13 11 14 (any time)", "Emergency services: 000"),
    "international": (
        "Your local emergency services number",
        "findahelpline.com, which lists free helplines by country",
    ),
}


@dataclass(frozen=True)
class SafetyResult:
    """Outcome of checking one message.

    Invariants: `crisis` is True iff `categories` is non-empty. `categories` are in `CATEGORIES` order.
    `matches` are the matched phrases from the normalised (lower-cased) text, in order of appearance,
    without duplicates.
    """

    crisis: bool
    categories: tuple[str, ...]
    matches: tuple[str, ...]


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, single spaces, and "im"/"ive"/"ill"/"id" as "i'm"/"i've"/..."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _BARE_I.sub(lambda m: "i'" + (m.group(1) or m.group(2)), text)
    return " ".join(text.split())


def _overlaps(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


def check_message(text: str) -> SafetyResult:
    """Check one seeker message against the lexicon; see `SafetyResult` for what comes back."""
    normalised = normalise(text)
    benign = [m.span() for pattern in _BENIGN_COMPILED for m in pattern.finditer(normalised)]
    joking = _JOKE.search(normalised) is not None
    categories: list[str] = []
    hits: list[tuple[int, str]] = []
    for category, patterns in _COMPILED.items():
        if joking and category == OTHERS:
            continue
        found = [
            (m.start(), m.group(0))
            for pattern in patterns
            for m in pattern.finditer(normalised)
            if not _overlaps(m.span(), benign)
        ]
        if found:
            categories.append(category)
            hits.extend(found)
    if not categories:
        return SafetyResult(crisis=False, categories=(), matches=())
    matches = tuple(dict.fromkeys(phrase for _, phrase in sorted(hits)))
    return SafetyResult(crisis=True, categories=tuple(categories), matches=matches)


def check_conversation(messages: Sequence[str], window: int) -> SafetyResult:
    """Check the last `window` seeker messages of a conversation (oldest first) together: crisis when
    any of them is, with every category and match found."""
    results = [check_message(text) for text in list(messages)[-window:]] if window > 0 else []
    flagged = [r for r in results if r.crisis]
    if not flagged:
        return SafetyResult(crisis=False, categories=(), matches=())
    found = {c for r in flagged for c in r.categories}
    matches = tuple(dict.fromkeys(m for r in flagged for m in r.matches))
    return SafetyResult(True, tuple(c for c in CATEGORIES if c in found), matches)


def crisis_reply(region: str = "international") -> str:
    """A short, warm reply for a seeker in crisis, listing the crisis resources for `region`.

    Raises:
        ValueError: `region` is not a key of `CRISIS_RESOURCES`.
    """
    key = region.strip().lower()
    if key not in CRISIS_RESOURCES:
        known = ", ".join(sorted(CRISIS_RESOURCES))
        raise ValueError(f"Unknown crisis-resource region {region!r}; use one of: {known}.")
    resources = "; ".join(CRISIS_RESOURCES[key])
    return (
        "I'm really sorry you're going through this, and I'm glad you told me. "
        "You deserve support right now, and you don't have to face this alone. "
        "If you are in immediate danger, please contact emergency services now. "
        f"You can reach someone any time here: {resources}."
    )
