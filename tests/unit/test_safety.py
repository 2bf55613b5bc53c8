"""Crisis lexicon, classifier hook and crisis replies (esc/safety.py)."""

from __future__ import annotations

import re

import pytest

from esc.safety import CRISIS_RESOURCES, SafetyResult, check_message, crisis_reply

CRISIS = [
    ("I want to kill myself", "suicide"),
    ("I've been thinking about ending my life", "suicide"),
    ("I don't want to be alive anymore", "suicide"),
    ("honestly i dont want to live anymore", "suicide"),
    ("I'd be better off dead", "suicide"),
    ("There's no reason to live now that she's gone", "suicide"),
    ("I\u2019ve been feeling suicidal for weeks", "suicide"),
    ("I wish I was dead", "suicide"),
    ("I'm not suicidal but everyone would be better off without me", "suicide"),
    ("I started cutting myself again last night", "self_harm"),
    ("Sometimes I just want to hurt myself", "self_harm"),
    ("I've been self-harming for months", "self_harm"),
    ("I keep thinking about an overdose", "self_harm"),
    ("I burn myself when it gets really bad", "self_harm"),
    ("I cut myself when I feel empty", "self_harm"),
    ("He hits me when he's drunk", "abuse"),
    ("I'm being abused by my stepdad", "abuse"),
    ("I'm afraid he will kill me if I leave", "abuse"),
    ("My boyfriend threatened to kill me", "abuse"),
    ("I don't feel safe at home", "abuse"),
    ("Someone is following me and I'm scared", "immediate_danger"),
    ("I have a gun", "immediate_danger"),
    ("I took a bunch of pills an hour ago", "immediate_danger"),
    ("Someone is trying to break in right now", "immediate_danger"),
    ("I'm bleeding and it won't stop", "immediate_danger"),
]

NON_CRISIS = [
    "I feel so sad since my dog died",
    "I'm so angry at my sister I could scream",
    "I've felt really lonely since I moved to a new city",
    "Exams are stressing me out and I can't sleep",
    "I'm frustrated that my boss never listens",
    "This job is killing me",
    "I could kill for a coffee right now",
    "My boss will kill me if I'm late again",
    "I'm dying to see the movie",
    "I'm dead tired after this week",
    "That joke killed me",
    "I nearly killed myself laughing at that show",
    "I wanted to die of embarrassment when I tripped",
    "I cut myself shaving this morning and now I'm late",
    "I hurt myself playing football",
    "I burned myself on the stove while cooking dinner",
    "My brother beat me at chess again",
    "He hit me up last night about the party",
    "Someone is following me on Instagram and it's weird",
    "I'm in danger of failing chemistry",
    "I don't want to live with my parents anymore",
    "I'm not suicidal, just exhausted and stressed",
    "I think I overdosed on coffee today",
    "It hurts that she forgot my birthday",
]


@pytest.mark.parametrize(("text", "category"), CRISIS)
def test_crisis_messages_are_flagged_with_their_category(text: str, category: str) -> None:
    result = check_message(text)
    assert result.crisis
    assert category in result.categories
    assert result.matches
    assert all(match in text.lower().replace("\u2019", "'") for match in result.matches)


@pytest.mark.parametrize("text", NON_CRISIS)
def test_non_crisis_messages_are_not_flagged(text: str) -> None:
    assert check_message(text) == SafetyResult(crisis=False, categories=(), matches=())


def test_matches_are_ordered_and_categories_combine() -> None:
    result = check_message("He hits me and I want to kill myself")
    assert result.categories == ("suicide", "abuse")
    assert result.matches == ("he hits me", "kill myself")


@pytest.mark.parametrize(
    ("region", "numbers"),
    [
        ("us", ["988", "911"]),
        ("ca", ["988", "911"]),
        ("uk", ["116 123", "999", "112"]),
        ("ie", ["116 123", "112", "999"]),
        ("au", ["13 11 14", "000"]),
        ("international", ["findahelpline.com", "emergency services"]),
    ],
)
def test_crisis_reply_lists_region_resources(region: str, numbers: list[str]) -> None:
    reply = crisis_reply(region)
    for number in numbers:
        assert number in reply
    for resource in CRISIS_RESOURCES[region]:
        assert resource in reply
    assert "deserve support" in reply
    assert "immediate danger" in reply
    assert 2 <= len(re.findall(r"[.!?](?:\s|$)", reply)) <= 4


def test_crisis_reply_defaults_to_international() -> None:
    assert crisis_reply() == crisis_reply("international")
    assert crisis_reply("UK") == crisis_reply("uk")


def test_unknown_region_names_the_known_regions() -> None:
    with pytest.raises(ValueError) as excinfo:
        crisis_reply("mars")
    message = str(excinfo.value)
    assert "'mars'" in message
    for region in CRISIS_RESOURCES:
        assert region in message
    assert message.count(".") == 1
