"""Crisis lexicon, classifier hook and crisis replies (esc/safety.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from esc.safety import CRISIS_RESOURCES, SafetyResult, check_conversation, check_message, crisis_reply

CRISIS = [
    ("I want to kill myself", "ideation"),
    ("I've been thinking about ending my life", "ideation"),
    ("I don't want to be alive anymore", "wish_to_be_dead"),
    ("honestly i dont want to live anymore", "wish_to_be_dead"),
    ("I'd be better off dead", "wish_to_be_dead"),
    ("There's no reason to live now that she's gone", "wish_to_be_dead"),
    ("I\u2019ve been feeling suicidal for weeks", "ideation"),
    ("I wish I was dead", "wish_to_be_dead"),
    ("I'm not suicidal but everyone would be better off without me", "wish_to_be_dead"),
    ("I started cutting myself again last night", "self_harm"),
    ("Sometimes I just want to hurt myself", "self_harm"),
    ("I've been self-harming for months", "self_harm"),
    ("I keep thinking about an overdose", "behaviour"),
    ("I burn myself when it gets really bad", "self_harm"),
    ("I cut myself when I feel empty", "self_harm"),
    ("He hits me when he's drunk", "abuse"),
    ("I'm being abused by my stepdad", "abuse"),
    ("I'm afraid he will kill me if I leave", "threat"),
    ("My boyfriend threatened to kill me", "threat"),
    ("I don't feel safe at home", "abuse"),
    ("Someone is following me and I'm scared", "threat"),
    ("I have a gun", "method"),
    ("I took a bunch of pills an hour ago", "behaviour"),
    ("Someone is trying to break in right now", "threat"),
    ("I'm bleeding and it won't stop", "behaviour"),
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
    assert result.categories == ("ideation", "abuse")
    assert result.matches == ("he hits me", "kill myself")


PROBES = Path(__file__).parents[1] / "fixtures" / "crisis_probes.jsonl"
EXPLICIT = ("method", "intent", "plan", "behaviour", "self_harm", "abuse", "threat", "harm_to_others")
INDIRECT = ("wish_to_be_dead", "ideation")


def probe_rates(path: Path) -> dict[str, tuple[int, int]]:
    """Per category: (messages flagged, messages); for 'ordinary' the flags are false alarms."""
    counts: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        probe = json.loads(line)
        tally = counts.setdefault(probe["category"], [0, 0])
        tally[0] += check_message(probe["text"]).crisis
        tally[1] += 1
    return {category: (flagged, n) for category, (flagged, n) in counts.items()}


def test_probe_set_recall_per_category_and_false_alarms() -> None:
    """The goals of docs/safety.md on the labelled probe set: every explicit crisis flagged, >= 90% of
    passive or indirect ones, <= 5% of ordinary distress messages flagged."""
    rates = probe_rates(PROBES)
    assert set(rates) == {*EXPLICIT, *INDIRECT, "ordinary"}
    assert all(rates[c][1] >= 12 for c in (*EXPLICIT, *INDIRECT)) and rates["ordinary"][1] >= 120
    missed = {c: rates[c] for c in EXPLICIT if rates[c][0] < rates[c][1]}
    assert not missed, missed
    assert all(rates[c][0] >= 0.9 * rates[c][1] for c in INDIRECT), {c: rates[c] for c in INDIRECT}
    assert rates["ordinary"][0] <= 0.05 * rates["ordinary"][1], rates["ordinary"]


@pytest.mark.parametrize(
    ("text", "crisis"),
    [
        ("my sister ate my fries, im going to kill her lol", False),
        ("im going to kill her, she ruined my life", True),
        ("ive been saving my sleeping pills for weeks", True),  # "ive" read as "i've"
        ("I'd never hurt myself, I'm just tired", False),
        ("I don't want to die, I just want the noise to stop", False),
        ("we wrote an essay on suicide rates in teens", False),
    ],
)
def test_jokes_denials_and_bare_contractions(text: str, crisis: bool) -> None:
    assert check_message(text).crisis is crisis


def test_conversation_check_reads_every_recent_seeker_message() -> None:
    said = ["I took 30 pills an hour ago", "anyway how are you", "can we talk about something else"]
    result = check_conversation(said, window=3)
    assert result.crisis and result.categories == ("behaviour",)
    assert not check_conversation(said, window=2).crisis  # the crisis is older than the window
    assert not check_conversation(said, window=0).crisis
    both = check_conversation(["my dad beats me", "i want to die"], window=6)
    assert both.categories == ("wish_to_be_dead", "abuse")


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


def test_fresh_probe_set_keeps_its_measured_recall_and_false_alarm_rate() -> None:
    """The set the lexicon was never tuned on (docs/safety.md): recall 35/80 and 2 false alarms of 80
    when it was written. A change that loses recall or adds false alarms on it fails here."""
    rates = probe_rates(PROBES.with_name("crisis_probes_fresh.jsonl"))
    flagged = sum(rates[c][0] for c in (*EXPLICIT, *INDIRECT))
    assert sum(rates[c][1] for c in (*EXPLICIT, *INDIRECT)) == 80 and rates["ordinary"][1] == 80
    assert flagged >= 35 and rates["ordinary"][0] <= 2
