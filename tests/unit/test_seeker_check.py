"""The role checker (naive Bayes, seeker vs supporter) and the seeker example pool, on hand-made texts."""

import json

import pytest
from conftest import ESCONV, REPO, needs_esconv

from esc.data import load_dialogues
from esc.schemas import Dialogue, Scenario, Turn
from esc.seeker_check import (
    RoleChecker,
    SeekerExamples,
    SeekerGrounding,
    accuracy,
    common_openers,
    features,
    role_consistency,
)

SEEKER = [
    "I feel so lonely since my girlfriend left me.",
    "I lost my job and I am scared about money.",
    "My parents keep fighting and I feel anxious all the time.",
    "I can't sleep because I worry about my exams.",
    "I feel like nobody cares about me anymore.",
]
SUPPORTER = [
    "I'm here to listen. What would you like to talk about?",
    "That sounds really hard. Have you tried talking to a friend?",
    "It's okay to take your time. How are you feeling today?",
    "I understand how you feel. Have you considered seeing a counselor?",
    "You are not alone, I am here for you. What else is on your mind?",
]
SCENARIO = Scenario(id="s-1", emotion_type="sadness", problem_type="breakup", situation="My partner left.")


def corpus():
    turns = []
    for seeker, supporter in zip(SEEKER, SUPPORTER):
        turns += [Turn(role="counselor", text=supporter), Turn(role="seeker", text=seeker)]
    return [Dialogue(id="d1", scenario=SCENARIO, turns=tuple(turns), source="esconv")]


def test_features_are_lowercased_unigrams_and_bigrams_with_turn_markers():
    bigrams = ["<s> i", "i feel", "feel sad", "sad ?", "? </s>"]
    assert features("I feel Sad?") == ["i", "feel", "sad", "?", *bigrams]


def test_probabilities_point_to_the_speaker_whose_words_a_text_uses():
    checker = RoleChecker.fit(corpus(), min_count=1)
    seeker_like = checker.seeker_probability("I feel anxious and lonely since I lost my job.")
    counselor_like = checker.seeker_probability("I'm here to listen. Have you tried talking to someone?")
    assert 0.9 < seeker_like <= 1.0
    assert 0.0 <= counselor_like < 0.1
    assert checker.in_role("I feel so lonely.") and not checker.in_role("I am here for you, take your time.")
    assert checker.seeker_probability("zebra quantum") == pytest.approx(0.5)  # no known word: no evidence


def test_equal_priors_make_the_probability_independent_of_turn_counts():
    # Five seeker turns against one supporter turn, but a text of neither speaker's words stays at 0.5.
    pairs = [("seeker", t) for t in SEEKER] + [("counselor", SUPPORTER[0])]
    checker = RoleChecker.fit_texts(pairs, min_count=1)
    assert checker.seeker_probability("") == pytest.approx(0.5)
    assert checker.meta["turns"] == {"seeker": 5, "counselor": 1}


def test_min_count_drops_rare_features():
    checker = RoleChecker.fit(corpus(), min_count=2)
    assert "i feel" in checker.vocabulary  # in three seeker turns
    assert "girlfriend" not in checker.vocabulary  # once only


def test_save_load_round_trip_keeps_every_probability(tmp_path):
    checker = RoleChecker.fit(corpus(), min_count=1, alpha=0.3)
    path = checker.save(tmp_path / "sub" / "checker.json")
    loaded = RoleChecker.load(path)
    assert json.loads(path.read_text())["format"] == "rlff-role-checker/1"
    assert loaded.alpha == 0.3 and loaded.vocabulary == checker.vocabulary
    for text in [*SEEKER, *SUPPORTER, "something else entirely"]:
        assert loaded.seeker_probability(text) == pytest.approx(checker.seeker_probability(text), abs=1e-12)


def test_load_rejects_a_file_that_is_not_a_checker(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="is not a role checker"):
        RoleChecker.load(path)
    with pytest.raises(ValueError, match="cannot read a role checker"):
        RoleChecker.load(tmp_path / "missing.json")


def test_fit_needs_both_speakers():
    with pytest.raises(ValueError, match="each speaker"):
        RoleChecker.fit_texts([("seeker", "I feel sad")])
    with pytest.raises(ValueError, match="unknown role label"):
        RoleChecker.fit_texts([("listener", "hello")])


def test_role_consistency_and_accuracy_count_turns():
    checker = RoleChecker.fit(corpus(), min_count=1)
    result = role_consistency(["I feel so lonely.", "I'm here to listen, take your time."], checker)
    assert result["n"] == 2 and result["in_role"] == 0.5
    assert role_consistency([], checker)["n"] == 0
    acc = accuracy(corpus(), checker)  # the training turns themselves: all classified right
    assert acc["seeker_accuracy"] == 1.0 and acc["counselor_accuracy"] == 1.0
    assert (acc["seeker_turns"], acc["counselor_turns"]) == (5, 5)


def test_example_pool_holds_seeker_turns_only_and_picks_deterministically():
    checker = RoleChecker.fit(corpus(), min_count=1)
    pool = SeekerExamples.from_dialogues(corpus(), checker, min_words=3)
    assert set(pool.all) <= set(SEEKER) and len(pool.all) == 5
    assert not set(pool.all) & set(SUPPORTER)
    first = pool.pick(SCENARIO, 3)
    assert first == pool.pick(SCENARIO, 3) and len(set(first)) == 3
    assert pool.pick(SCENARIO, 3, seed=1) != first or pool.pick(SCENARIO, 3, seed=2) != first
    assert len(pool.pick(SCENARIO, 10)) == 5  # never more than the pool holds
    with pytest.raises(ValueError, match="no seeker turns qualify"):
        SeekerExamples.from_dialogues(corpus(), checker, min_words=50)


def test_grounding_is_cached_as_json_keyed_by_the_data(tmp_path):
    spec = f"esconv:{REPO / 'tests' / 'fixtures' / 'esconv_split'}#train"
    first = SeekerGrounding.from_spec(spec, cache=tmp_path)
    assert first.examples.by_problem == {
        "job crisis": ["My contract might not be renewed."],
        "problems with friends": ["My friend bailed on me again."],
    }
    files = list(tmp_path.glob("grounding-*.json"))
    assert len(files) == 1
    payload = json.loads(files[0].read_text())
    payload["examples"] = {"job crisis": ["A cached example, so the second call must read the file."]}
    files[0].write_text(json.dumps(payload))
    second = SeekerGrounding.from_spec(spec, cache=tmp_path)
    assert second.examples.all == ["A cached example, so the second call must read the file."]
    assert second.checker.vocabulary == first.checker.vocabulary
    files[0].write_text("{broken")  # a damaged entry is refitted, not an error
    assert SeekerGrounding.from_spec(spec, cache=tmp_path).examples.by_problem == first.examples.by_problem


@needs_esconv
def test_checker_separates_real_held_out_esconv_turns():
    checker = RoleChecker.fit(load_dialogues(f"esconv:{ESCONV}#train"))
    acc = accuracy(load_dialogues(f"esconv:{ESCONV}#valid"), checker)
    assert acc["seeker_accuracy"] > 0.8 and acc["counselor_accuracy"] > 0.8


def test_openers_are_frequent_first_person_starts_the_checker_reads_as_a_seeker():
    checker = RoleChecker.fit(corpus(), min_count=1)
    texts = [
        "i feel sad about it",
        "I feel lost today",
        "I feel tired",
        "My job is gone now",
        "Have you tried it",
    ]
    openers = common_openers(texts, checker, min_probability=0.5)
    assert openers[0] == "I feel"  # the most frequent, 'i' capitalised and counted with 'I'
    assert "My job" in openers and "Have you" not in openers  # no first-person word
    assert common_openers(["I'm here to listen to you"], checker, min_probability=0.5) == ()
