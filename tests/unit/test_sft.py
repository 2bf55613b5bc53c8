"""The supervised baseline: example building, reply caps, history fitting and the SFT job's caching,
on synthetic dialogues and without a model (the training runs are in tests/e2e/test_sft_training.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.sft_data import REPLY_INDICES, SCENARIO, dialogue, sft_config

from esc import prompts
from esc.config import build_config
from esc.data import parse_spec
from esc.parsing import parse_counselor
from jobs import UsageError
from jobs.fingerprint import mark
from jobs.train_sft import cold_start, inputs_fingerprint, run_train_sft
from learner.sft import cap_reply, fit_examples, reasoning_text, sft_examples

FORMAT = re.compile(r"^<think>(?P<think>[^<]+)</think>\n<answer>(?P<answer>[^<]+)</answer>$")


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
    assert FORMAT.match(first["content"])["think"].endswith("; ask an open question.")
    assert FORMAT.match(second["content"])["think"].endswith("; name their feelings.")


def test_reasoning_text():
    assert reasoning_text(SCENARIO, "Reflection of feelings") == (
        "They feel anxiety about job crisis; name their feelings."
    )
    generic = "They feel anxiety about job crisis; reply warmly."
    assert reasoning_text(SCENARIO, "Others") == reasoning_text(SCENARIO, None) == generic
    assert reasoning_text(SCENARIO, "Humour").endswith("; Humour.")


def words(text: str) -> int:
    return len(text.split())


def test_cap_reply_keeps_whole_leading_sentences():
    text = "One two three. Four five! Six seven eight nine?  Ten."
    assert cap_reply(text, words, 10) == text.strip()
    assert cap_reply(text, words, 9) == "One two three. Four five! Six seven eight nine?"
    assert cap_reply(text, words, 8) == "One two three. Four five!"
    assert cap_reply(text, words, 5) == "One two three. Four five!"
    assert cap_reply(text, words, 4) == "One two three."
    assert cap_reply(text, words, 2) is None  # the first sentence alone is too long: left out
    assert cap_reply("  no end mark at all  ", words, 1) is None


def test_cap_shortens_or_skips_replies():
    def cap(text):
        return None if "Why" in text else text.upper()

    d = dialogue()
    examples = sft_examples([d], reasoning=True, max_examples=100, seed=0, cap=cap)
    assert [e["prompt"] for e in examples] == [prompts.counselor_messages(list(d.turns[:6]), True)]
    assert FORMAT.match(examples[0]["completion"][0]["content"])["answer"] == (
        "IT SOUNDS LIKE YOU FEEL ANXIOUS AND UNREADY."
    )


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


def test_fingerprint_follows_training_inputs_only(tmp_path):
    config = sft_config(tmp_path)
    spec = parse_spec(config.sft.data)
    base = inputs_fingerprint(config, spec)
    assert inputs_fingerprint(sft_config(tmp_path, "sft.cold_start=true"), spec) == base
    changes = ("sft.lr=1e-3", "sft.max_answer_tokens=20", "sft.bf16=true", "counselor.reasoning=false")
    for change in (*changes, "seed=1"):
        assert inputs_fingerprint(sft_config(tmp_path, change), spec) != base, change
    assert inputs_fingerprint(config, parse_spec(f"esconv:{tmp_path / 'esconv'}#valid")) != base
    (tmp_path / "esconv" / "valid.jsonl").write_text("")  # another split's file is not an input
    assert inputs_fingerprint(config, spec) == base
    with (tmp_path / "esconv" / "train.jsonl").open("a") as handle:
        handle.write("\n")
    assert inputs_fingerprint(config, spec) != base


def test_train_skips_when_the_folder_holds_the_model_for_the_same_inputs(tmp_path, capsys):
    config = sft_config(tmp_path)
    out = tmp_path / "runs" / "local" / "sft"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    mark(out, inputs_fingerprint(config, parse_spec(config.sft.data)))
    assert run_train_sft(config) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        f"SFT model in {out} is up to date (same settings and data); not retraining"
    ]


def test_cold_start_points_the_counselor_at_the_absolute_sft_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    off = build_config({"runs_dir": "runs"})
    assert cold_start(off) is off
    on = build_config({"runs_dir": "runs", "name": "x"}, ["sft.cold_start=true"])
    with pytest.raises(UsageError, match=r"run `rlff train --stage sft`"):
        cold_start(on)
    folder = tmp_path / "runs" / "x" / "sft"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="no trained SFT model"):  # a folder without a finished model
        cold_start(on)
    mark(folder, "abc")
    started = cold_start(on)
    assert started.counselor.model == str(folder) and Path(started.counselor.model).is_absolute()
    assert started.counselor.model_dump(exclude={"model"}) == on.counselor.model_dump(exclude={"model"})
    assert started.model_dump(exclude={"counselor"}) == on.model_dump(exclude={"counselor"})
    assert on.counselor.model == "smollm2-135m"  # the caller's config is left as it was


def test_train_needs_sft_data(tmp_path):
    with pytest.raises(UsageError, match="sft.data"):
        run_train_sft(build_config({"runs_dir": str(tmp_path)}))
    with pytest.raises(UsageError, match="builtin"):
        run_train_sft(build_config({"runs_dir": str(tmp_path)}, ["sft.data=builtin"]))


def test_history_cap_keeps_the_last_turns_in_prompt_and_sft_examples_alike():
    d = dialogue()
    capped = prompts.counselor_messages(list(d.turns[:6]), True, max_turns=2)
    assert capped[0]["role"] == "system"
    assert capped[1:] == [{"role": "user", "content": "My leave ends soon.\nAnd I am not ready."}]
    assert prompts.counselor_messages(list(d.turns[:6]), True, max_turns=0) == prompts.counselor_messages(
        list(d.turns[:6]), True
    )
    examples = sft_examples([d], reasoning=True, max_examples=100, seed=0, max_turns=2)
    assert [e["prompt"] for e in examples] == [
        prompts.counselor_messages(list(d.turns[:i]), True, max_turns=2) for i in REPLY_INDICES
    ]
    assert all(len(e["prompt"]) <= 3 for e in examples)


def test_bf16_trains_on_a_cpu_under_autocast_close_to_float32():
    import torch

    from esc.config import SFTConfig
    from esc.models import tiny_random_model
    from learner.sft import _train_steps

    rows = [(list(range(5 + i, 45 + i)), 8) for i in range(8)]
    losses = {}
    for bf16 in (False, True):
        model = tiny_random_model(256, seed=0)
        settings = SFTConfig(max_steps=6, lr=1e-2, batch_size=4, bf16=bf16)
        losses[bf16], _ = _train_steps(model, rows, [], 0, settings, seed=0, device="cpu")
        assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not bf16 weights
    assert losses[True] != losses[False]
    assert losses[True][0] == pytest.approx(losses[False][0], rel=0.02)
    assert losses[True][-1] < losses[True][0] and losses[False][-1] < losses[False][0]


def test_cpu_lacks_bf16_reads_the_flags_line_and_says_nothing_when_it_cannot_tell():
    from esc.models import cpu_lacks_bf16

    line = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f{}\nmodel name\t: x\n"
    assert cpu_lacks_bf16(line.format(""))
    assert not cpu_lacks_bf16(line.format(" amx_bf16"))
    assert not cpu_lacks_bf16(line.format(" avx512_bf16"))
    assert not cpu_lacks_bf16("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # an ARM CPU: no x86 flags
    assert not cpu_lacks_bf16("")


def test_slow_bf16_note_names_the_setting_to_turn_off_only_on_a_cpu_without_bf16():
    from esc.models import slow_bf16_note

    line = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f{}\nmodel name\t: x\n"
    note = slow_bf16_note("learner.bf16", line.format(""))
    assert note == (
        "note: this CPU has no bf16 instructions, so learner.bf16 may be slower; try --set learner.bf16=auto"
        " (on only where the CPU has them) or false"
    )
    assert slow_bf16_note("sft.bf16", line.format(" avx512_bf16")) is None
    assert slow_bf16_note("sft.bf16", "") is None


def test_auto_bf16_is_on_only_where_the_cpu_shows_bf16_instructions():
    from esc.models import use_bf16

    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f{}\nmodel name\t: x\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd{}\n"
    assert use_bf16("auto", "cpu", x86.format(" amx_bf16")) and use_bf16(
        "auto", "cpu", x86.format(" avx512_bf16")
    )
    assert not use_bf16("auto", "cpu", x86.format(""))  # AVX2 / AVX-512 without BF16: bf16 is slower there
    assert use_bf16("auto", "cpu", arm.format(" bf16")) and not use_bf16("auto", "cpu", arm.format(""))
    assert not use_bf16("auto", "cpu", "")  # cannot tell: float32
    for cpuinfo in (x86.format(""), x86.format(" amx_bf16"), ""):  # true and false say what they mean
        assert use_bf16(True, "cpu", cpuinfo) and not use_bf16(False, "cpu", cpuinfo)


def test_bf16_settings_take_true_false_or_auto_and_refuse_anything_else_in_one_sentence():
    from esc.config import load_config

    config = load_config(
        "configs/local.yaml", ["learner.bf16=auto", "sft.bf16=false", "reward_model.bf16=true"]
    )
    assert (config.learner.bf16, config.sft.bf16, config.reward_model.bf16) == ("auto", False, True)
    assert config.seeker_sft.bf16 == "auto"  # configs/local.yaml
    with pytest.raises(ValueError, match="a bf16 setting is true, false or 'auto', not 'maybe'"):
        load_config("configs/local.yaml", ["learner.bf16=maybe"])
