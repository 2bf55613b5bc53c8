import pytest

from esc.parsing import AnswerStream, parse_counselor, parse_verdict
from esc.roles import expected_reward, is_success, mean_sampled_reward


@pytest.mark.parametrize(
    "text, reasoning, answer, ok",
    [
        (
            "<think>they feel alone</think><answer>That sounds lonely.</answer>",
            "they feel alone",
            "That sounds lonely.",
            True,
        ),
        ("  <think>a\nb</think>\n<answer>Hi there</answer>\n", "a\nb", "Hi there", True),
        ("<THINK>x</THINK><ANSWER>y</ANSWER>", "x", "y", True),
        # broken formats: the answer never carries reasoning or tags
        ("<think>x</think><answer>unclosed answer", "x", "unclosed answer", False),
        ("<think>x</think>just a reply", "x", "just a reply", False),
        ("no tags at all", "", "no tags at all", False),
        ("<think>never closed and rambling", "never closed and rambling", "", False),
        ("<think></think><answer>empty reasoning</answer>", "", "empty reasoning", False),
        ("<think>x</think><answer>a</answer> trailing", "x", "a", False),
        ("<think>x</think><answer>a <think>leak</think></answer>", "x leak", "a", False),
        ("They feel sad.</think>That sounds hard.", "They feel sad.", "That sounds hard.", False),
        ("\u0130zmir is far.</THINK>That sounds hard.", "\u0130zmir is far.", "That sounds hard.", False),
    ],
)
def test_counselor_parser(text, reasoning, answer, ok):
    parsed = parse_counselor(text)
    assert parsed.reasoning == reasoning
    assert parsed.answer == answer
    assert parsed.well_formed is ok
    assert "<" not in parsed.answer


@pytest.mark.parametrize(
    "text, reward",
    [
        ("worse", -1.0),
        ("Same.", -0.5),
        ("The seeker feels better", 0.5),
        ("SOLVED", 1.0),
        ("unsure", None),
        ("", None),
        ("better, maybe worse", 0.5),
    ],
)
def test_verdict_parser(text, reward):
    assert parse_verdict(text) == reward


def test_ten_better_verdicts_are_mean_half_which_is_not_success():
    reward = mean_sampled_reward(["better"] * 10)
    assert reward == 0.5
    assert not is_success(reward)


def test_unparsable_samples_are_dropped():
    assert mean_sampled_reward(["solved", "??", "better", "no idea"]) == pytest.approx(0.75)
    assert is_success(0.75)


def test_all_unparsable_gives_zero():
    assert mean_sampled_reward(["hmm", "", "cannot say"]) == 0.0


def test_expected_reward_under_label_probabilities():
    probs = {"worse": 0.1, "same": 0.2, "better": 0.3, "solved": 0.4}
    # -1*0.1 - 0.5*0.2 + 0.5*0.3 + 1*0.4 = 0.35
    assert expected_reward(probs) == pytest.approx(0.35)


def test_a_closing_tag_cut_by_the_token_budget_is_not_part_of_the_answer():
    raw = "<think>They feel hurt.</think>\n<answer>I hope you can talk with him soon.</"
    reply = parse_counselor(raw)
    assert not reply.well_formed and reply.answer == "I hope you can talk with him soon."
    assert parse_counselor("<think>x</think><answer>Try a walk <").answer == "Try a walk"
    kept = parse_counselor("<think>x</think><answer>Compare 3 < 4 then</answer>")
    assert kept.well_formed and kept.answer == "Compare 3 < 4 then"


def _streamed(raw: str, reasoning: bool = True, stops: tuple[str, ...] = ()) -> tuple[str, str, list[str]]:
    """Feed `raw` one character at a time, then finish with its parse; returns (reasoning, answer, the
    answer pieces sent before the finish)."""
    stream, thought, answer, early = AnswerStream(reasoning, stops), "", "", []
    for end in range(1, len(raw) + 1):
        r, a = stream.feed(raw[:end])
        thought, answer = thought + r, answer + a
        early += [a] if a else []
    parsed = parse_counselor(raw)
    r, a = stream.finish(parsed.reasoning if reasoning else None, parsed.answer)
    assert not stream.diverged
    return thought + r, answer + a, early


@pytest.mark.parametrize(
    "raw",
    [
        "<think>She is scared. Reflect it.</think><answer>That sounds frightening. What next?</answer>",
        "<think>Short.</think>\n<answer>  I hear you.  </answer>",
        "<think>The budget ran out inside the answer</think><answer>It sounds like you have been carrying",
        "<think>No answer ever came",
        # lower-casing makes '\u0130' two characters: tags found in a lower-cased copy land off by one
        "<think>\u0130stanbul, alone \u0130\u0130</think><ANSWER>You moved far from home.</answer>",
    ],
)
def test_answer_stream_pieces_add_up_to_the_parsed_reply(raw):
    thought, answer, early = _streamed(raw)
    parsed = parse_counselor(raw)
    assert (thought, answer) == (parsed.reasoning, parsed.answer)
    if parsed.answer and "</answer>" in raw:
        assert len(early) > 3 and "".join(early) != ""  # pieces came while it was being written


def test_answer_stream_never_shows_a_tag_or_the_text_after_a_stop():
    raw = "<think>plan</think><answer>Take a breath. Then tell me more.</answer>"
    for end in range(1, len(raw) + 1):
        _, piece = AnswerStream(True).feed(raw[:end])
        assert "<" not in piece and ">" not in piece
    _, answer, early = _streamed(raw, stops=("Then",))
    assert "".join(early) == "Take a breath." and not any("Th" in p for p in early)
    stream = AnswerStream(True, stops=("Then",))
    stream.feed(raw)
    assert stream.finish("plan", "Take a breath. Then tell me more.") == ("", "")
