"""The supervised baseline: example building (fast, synthetic dialogues) and a tiny training run (slow)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from esc import prompts
from esc.config import build_config
from esc.data import parse_spec
from esc.parsing import parse_counselor
from esc.schemas import Dialogue, Scenario, Turn
from jobs import UsageError
from jobs.fingerprint import mark
from jobs.train_sft import cold_start, inputs_fingerprint, run_train_sft
from learner.sft import cap_reply, fit_examples, generated_tokens, reasoning_text, sft_examples

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


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "esconv_split"


def sft_config(tmp_path, *overrides):
    data = tmp_path / "esconv"
    if not data.exists():
        shutil.copytree(FIXTURE, data)
    return build_config({"runs_dir": str(tmp_path / "runs")}, [f"sft.data=esconv:{data}#train", *overrides])


def test_fingerprint_follows_training_inputs_only(tmp_path):
    config = sft_config(tmp_path)
    spec = parse_spec(config.sft.data)
    base = inputs_fingerprint(config, spec)
    assert inputs_fingerprint(sft_config(tmp_path, "sft.cold_start=true"), spec) == base
    for change in ("sft.lr=1e-3", "sft.max_answer_tokens=20", "counselor.reasoning=false", "seed=1"):
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
        content = example["completion"][0]["content"]
        generated = trained[len(inference) : len(inference) + generated_tokens(tokenizer, example)]
        assert tokenizer.decode(generated) == content.removeprefix(prompts.THINK_PREFILL)
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


@pytest.mark.slow
def test_completion_loss_with_the_cached_prefix_equals_the_full_sequence_loss():
    import torch

    from esc.models import load_model
    from learner.sft import completion_loss, shared_prefix, tokenize_example

    model, tokenizer = load_model("tiny-random", seed=0)
    examples = sft_examples([dialogue(n) for n in range(2)], reasoning=True, max_examples=4, seed=0)
    rows = [tokenize_example(tokenizer, e) for e in examples]
    shared = shared_prefix([ids for ids, _ in rows], min(start for _, start in rows))
    assert 20 < shared < min(start for _, start in rows)  # the system prompt, not the whole prompt
    # Full sequences, one at a time: the same mean over every completion token of the batch.
    total, count = 0.0, 0
    for ids, start in rows:
        labels = torch.tensor([[-100] * start + ids[start:]])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits
        losses = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], reduction="none")
        total += float(losses[labels[0, 1:] != -100].sum())
        count += len(ids) - start
    with torch.no_grad():
        cached = float(completion_loss(model, rows[0][0][:shared], rows, tokenizer.pad_token_id))
        plain = float(completion_loss(model, [], rows, tokenizer.pad_token_id))
    assert cached == pytest.approx(total / count, rel=1e-4)
    assert plain == pytest.approx(total / count, rel=1e-4)


@pytest.mark.slow
def test_train_caches_and_the_run_cold_starts_from_the_saved_model(tmp_path, capsys):
    import torch

    from esc.models import load_model
    from learner.lora import add_lora

    overrides = ["counselor.model=tiny-random", "sft.max_steps=2", "sft.batch_size=2", "sft.max_examples=4"]
    config = sft_config(tmp_path, *overrides, "sft.lora_rank=4", "sft.lr=1e-2", "sft.cold_start=true")
    assert run_train_sft(config) == 0
    out = tmp_path / "runs" / "local" / "sft"
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 and report["examples"] == 4
    capsys.readouterr()
    assert run_train_sft(config) == 0  # same inputs: skipped
    assert "up to date" in capsys.readouterr().out
    started = cold_start(config)
    assert started.counselor.model == str(out.resolve())
    model, _ = load_model(started.counselor.model)
    initial, _ = load_model("tiny-random", seed=config.seed)
    assert "lora" not in " ".join(model.state_dict())  # adapters merged into plain weights
    changed = [k for k, v in initial.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert changed and all("proj" in k for k in changed)  # LoRA touched the linear layers only
    wrapped = add_lora(model, 4)  # the learner's own adapters go on top of the SFT model
    assert any("lora_A" in name for name, _ in wrapped.named_parameters())


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
