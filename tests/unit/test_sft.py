"""The supervised baseline: example building (fast, synthetic dialogues) and a tiny training run (slow)."""

from __future__ import annotations

import math
import re

import pytest

from esc import prompts
from esc.config import build_config
from esc.parsing import parse_counselor
from esc.schemas import Dialogue, Scenario, Turn
from jobs import UsageError
from jobs.train_sft import run_train_sft
from learner.sft import fit_examples, reasoning_text, sft_examples

SCENARIO = Scenario(
    id="s-1", emotion_type="anxiety", problem_type="job crisis", situation="I may lose my job soon."
)
FORMAT = re.compile(r"^<think>(?P<think>[^<]+)</think>\n<answer>(?P<answer>[^<]+)</answer>$")


def seeker(text: str) -> Turn:
    return Turn(role="seeker", text=text)


def counselor(text: str, strategy: str | None = None) -> Turn:
    return Turn(role="counselor", text=text, strategy=strategy)


def dialogue(n: int = 0) -> Dialogue:
    """Counselor turns at 1 and 5 follow a seeker; 2 follows a counselor, 7 is blank: both skipped."""
    turns = (
        counselor("Hello, how can I help?", "Question"),  # 0: opens, no seeker before it
        seeker(f"I am afraid I will lose my job ({n})."),
        counselor("Why do you think so?", "Question"),
        counselor("Take your time.", "Others"),
        seeker("My leave ends soon."),
        seeker("And I am not ready."),
        counselor("It sounds like you feel anxious and unready.", "Reflection of feelings"),
        seeker("Yes."),
        counselor("   ", "Question"),
    )
    return Dialogue(id=f"d-{n}", scenario=SCENARIO, turns=turns, source="esconv")


REPLY_INDICES = (2, 6)


@pytest.mark.parametrize("reasoning", [True, False])
def test_prompt_is_what_the_counselor_sees(reasoning):
    d = dialogue()
    examples = sft_examples([d], reasoning, max_examples=100, seed=0)
    assert [e["prompt"] for e in examples] == [
        prompts.counselor_messages(list(d.turns[:i]), reasoning) for i in REPLY_INDICES
    ]
    # Merged consecutive seeker turns, and the prompt ends on the seeker's message.
    assert examples[1]["prompt"][-1] == {
        "role": "user",
        "content": "My leave ends soon.\nAnd I am not ready.",
    }


def test_only_counselor_turns_after_a_seeker_turn():
    examples = sft_examples([dialogue()], reasoning=False, max_examples=100, seed=0)
    assert [e["completion"] for e in examples] == [
        [{"role": "assistant", "content": "Why do you think so?"}],
        [{"role": "assistant", "content": "It sounds like you feel anxious and unready."}],
    ]


def test_reasoning_completion_continues_the_think_prefill_and_names_the_strategy():
    examples = sft_examples([dialogue()], reasoning=True, max_examples=100, seed=0)
    (first,), (second,) = (e["completion"] for e in examples)
    for message, reply in zip(
        (first, second), ("Why do you think so?", "It sounds like you feel anxious and unready.")
    ):
        assert message["role"] == "assistant"
        assert message["content"].startswith(prompts.THINK_PREFILL)
        match = FORMAT.match(message["content"])
        assert match and match["answer"] == reply
        parsed = parse_counselor(message["content"])
        assert parsed.well_formed and parsed.answer == reply
        assert "anxiety" in match["think"] and "job crisis" in match["think"]
    assert "Question fits" in FORMAT.match(first["content"])["think"]
    assert "Reflection of feelings fits" in FORMAT.match(second["content"])["think"]


def test_reasoning_text():
    assert reasoning_text(SCENARIO, "Reflection of feelings") == (
        "They feel anxiety about job crisis; Reflection of feelings fits: name the feelings they describe."
    )
    generic = "They feel anxiety about job crisis; a warm, natural reply fits."
    assert reasoning_text(SCENARIO, "Others") == reasoning_text(SCENARIO, None) == generic
    assert reasoning_text(SCENARIO, "Humour").endswith("Humour fits.")


def test_max_examples_is_a_seeded_subset():
    dialogues = [dialogue(n) for n in range(10)]
    everything = sft_examples(dialogues, reasoning=True, max_examples=1000, seed=0)
    assert len(everything) == 20
    a = sft_examples(dialogues, reasoning=True, max_examples=5, seed=1)
    assert len(a) == 5
    assert a == sft_examples(dialogues, reasoning=True, max_examples=5, seed=1)
    assert a != sft_examples(dialogues, reasoning=True, max_examples=5, seed=2)
    assert all(e in everything for e in a)
    assert [everything.index(e) for e in a] == sorted(everything.index(e) for e in a)  # data order kept
    with pytest.raises(ValueError):
        sft_examples(dialogues, reasoning=True, max_examples=0, seed=0)


class WordTokenizer:
    """One token per whitespace-separated word; the template adds one token per message (the role)."""

    def apply_chat_template(self, messages, tokenize=False):
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def test_fit_examples_drops_oldest_history_and_keeps_the_reply():
    def msg(role, words):
        return {"role": role, "content": " ".join([role[0]] * words)}

    completion = [msg("assistant", 3)]  # 4 tokens
    system = msg("system", 4)  # 5 tokens
    history = [msg("user", 9), msg("assistant", 9), msg("user", 2)]  # 10, 10, 3 tokens
    short = {"prompt": [system, msg("user", 2)], "completion": completion}  # 12 tokens
    long = {"prompt": [system, *history], "completion": completion}  # 32 tokens
    fitted, trimmed, dropped = fit_examples([short, long], WordTokenizer(), max_tokens=20)
    # Dropping the old user message alone would start the history on an assistant turn: both go.
    assert fitted == [short, {"prompt": [system, history[-1]], "completion": completion}]
    assert (trimmed, dropped) == (1, 0)
    fitted, trimmed, dropped = fit_examples([short, long], WordTokenizer(), max_tokens=11)
    assert (fitted, trimmed, dropped) == ([], 0, 2)


def test_train_needs_sft_data(tmp_path):
    with pytest.raises(UsageError, match="sft.data"):
        run_train_sft(build_config({"runs_dir": str(tmp_path)}))
    with pytest.raises(UsageError, match="builtin"):
        run_train_sft(build_config({"runs_dir": str(tmp_path)}, ["sft.data=builtin"]))


@pytest.mark.slow
def test_trained_text_continues_the_inference_prefill():
    """Token-level: the prompt the counselor generates from (template + '<think>') is a prefix of the
    tokenized training conversation, so training continues exactly where generation does."""
    from esc.models import load_tokenizer

    tokenizer = load_tokenizer("tiny-random")
    for example in sft_examples([dialogue()], reasoning=True, max_examples=100, seed=0):
        generation_prompt = tokenizer.apply_chat_template(
            example["prompt"], tokenize=False, add_generation_prompt=True
        )
        inference = tokenizer(generation_prompt + prompts.THINK_PREFILL, add_special_tokens=False)[
            "input_ids"
        ]
        full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        trained = tokenizer(full, add_special_tokens=False)["input_ids"]
        assert trained[: len(inference)] == inference
        assert full.endswith(prompts.ANSWER_CLOSE + tokenizer.eos_token + "\n")


@pytest.mark.slow
def test_train_sft_tiny_model_saves_a_loadable_changed_model(tmp_path):
    import torch

    from esc.models import load_model
    from learner.sft import train_sft

    config = build_config(
        {},
        [
            "counselor.model=tiny-random",
            "sft.max_steps=3",
            "sft.batch_size=2",
            "sft.max_tokens=256",
            "sft.lr=1e-3",
        ],
    )
    examples = sft_examples([dialogue(n) for n in range(3)], reasoning=True, max_examples=6, seed=0)
    out = tmp_path / "sft"
    result = train_sft(config, examples, out)
    assert result["steps"] == 3 and len(result["losses"]) == 3
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["last_loss"])
    assert result["examples"] == 6 and result["examples_dropped"] == 0
    assert (out / "model.safetensors").is_file()

    trained, _ = load_model(str(out))
    initial, _ = load_model("tiny-random", seed=config.seed)
    before, after = initial.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
