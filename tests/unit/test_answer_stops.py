"""An API client's stop strings end decoding at the first one in the answer: `first_stop` finds it (in
a reasoning counselor's reply only after `<answer>`), a decode row ends there, and the counselor asks
for it and reads a reply it cut as an answer that closed there."""

import asyncio
from dataclasses import replace

from esc.backends.base import Generation, SamplingParams, first_stop
from esc.backends.decode_batch import Row
from esc.config import CounselorConfig, SafetyConfig
from esc.roles import FALLBACK_ANSWER, Counselor
from esc.schemas import Turn

LATE = SamplingParams(stop=("</answer>",), late_stop=(".", "!"), late_stop_after="<answer>")


def test_first_stop_by_hand():
    # the '.' at 7 is in the reasoning; the one at 28 is the answer's first
    assert first_stop("I think. so <answer>Hi there. Bye", LATE) == (28, ".")
    assert first_stop("I think. so", LATE) is None  # no answer yet
    assert first_stop("<ANSWER>Hi!", LATE) == (10, "!")  # the tag in any case
    assert first_stop("x</answer>", LATE) == (1, "</answer>")  # a plain stop counts anywhere
    assert first_stop("<answer>a.b</answer>", LATE) == (9, ".")  # the earliest of both kinds
    assert first_stop("abcb", SamplingParams(stop=("c", "b"))) == (1, "b")
    assert first_stop("a.b", SamplingParams()) is None
    # the blanks after the tag are not the answer's (a parsed answer drops them): a stop counts after
    assert first_stop("<answer>\n I hear you.\nMore", replace(LATE, late_stop=("\n",))) == (21, "\n")
    assert first_stop("<answer>\n ", replace(LATE, late_stop=("\n",))) is None
    # characters whose lower case is longer (İ) do not move where the answer starts
    assert first_stop("İİİİ<answer>Hi! x", LATE) == (14, "!")
    # a plain counselor's answer starts at the reply's first non-blank character
    plain = SamplingParams(late_stop=("\n",), late_stop_after="")
    assert first_stop("\nI hear you.\nMore", plain) == (12, "\n")


class Chars:
    """A tokenizer whose tokens are characters."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(map(chr, ids))


def test_a_row_ends_at_the_first_stop_in_its_answer():
    params = replace(LATE, max_new_tokens=64, prefill="<think>")
    row = Row(key=None, prompt=[1, 2], params=params, generator=None)
    taken = 0
    for char in "Sad. Listen.</think><answer>I hear you. More words":
        row.take(ord(char), -0.5, eos_ids={0}, tokenizer=Chars())
        taken += 1
        if row.finish:
            break
    assert (row.finish, row.stop) == ("stop", ".")
    assert taken == len("Sad. Listen.</think><answer>I hear you.")  # not one token more
    generation = row.generation(Chars())
    assert generation.text == "<think>Sad. Listen.</think><answer>I hear you"
    assert (generation.completion_tokens, generation.stop_sequence) == (taken, ".")


def test_a_stop_at_the_start_leaves_an_empty_text_not_the_stop_string():
    row = Row(key=None, prompt=[1], params=SamplingParams(stop=("Hi",)), generator=None)
    for char in "Hi there":
        row.take(ord(char), -0.5, eos_ids={0}, tokenizer=Chars())
        if row.finish:
            break
    assert row.generation(Chars()).text == "" and row.stop == "Hi"


class Scripted:
    """A backend that answers every request with one fixed generation and keeps the params it got."""

    name = "hf"

    def __init__(self, generation: Generation):
        self.generation, self.params = generation, []

    async def generate(self, messages, params):
        self.params.append(params)
        return self.generation


def counselor(generation: Generation, reasoning: bool) -> tuple[Counselor, Scripted]:
    backend = Scripted(generation)
    config = CounselorConfig(model="tiny-random", reasoning=reasoning)
    return Counselor(backend, config, SafetyConfig(enabled=False)), backend


def test_a_reasoning_counselor_asks_for_answer_stops_and_reads_a_cut_answer_as_closed():
    cut = Generation("<think>They feel alone.</think><answer>I hear you", 30, 14, "stop", stop_sequence=".")
    role, backend = counselor(cut, reasoning=True)
    history = [Turn(role="seeker", text="I feel alone.")]
    output = asyncio.run(role.respond(history, seed=1, answer_stops=(".",)))
    (params,) = backend.params
    assert (params.stop, params.late_stop, params.late_stop_after) == (("</answer>",), (".",), "<answer>")
    assert (output.turn.text, output.turn.reasoning, output.well_formed) == (
        "I hear you",
        "They feel alone.",
        True,
    )
    # without stops: nothing late, and an unclosed answer that no stop cut stays malformed
    unclosed = Generation("<think>They feel alone.</think><answer>I hear you", 30, 14, "length")
    role, backend = counselor(unclosed, reasoning=True)
    output = asyncio.run(role.respond(history, seed=1))
    assert backend.params[0].late_stop == () and not output.well_formed


def test_a_plain_counselor_s_answer_stops_count_from_its_first_character():
    role, backend = counselor(Generation("I hear you", 30, 4, "stop", stop_sequence="."), reasoning=False)
    output = asyncio.run(role.respond([Turn(role="seeker", text="I feel alone.")], answer_stops=(".", "?")))
    (params,) = backend.params
    assert (params.stop, params.late_stop, params.late_stop_after) == ((), (".", "?"), "")
    assert output.turn.text == "I hear you"


def test_an_answer_a_stop_string_cut_to_nothing_stays_empty():
    history = [Turn(role="seeker", text="I feel alone.")]
    empty = Generation("<think>They feel alone.</think><answer>", 30, 9, "stop", stop_sequence="I")
    output = asyncio.run(counselor(empty, reasoning=True)[0].respond(history, answer_stops=("I",)))
    assert output.turn.text == "" and not output.well_formed
    # a reply that ended on a stop the client did not send (none here) still gets the fallback line
    output = asyncio.run(counselor(empty, reasoning=True)[0].respond(history))
    assert output.turn.text == FALLBACK_ANSWER and not output.well_formed
