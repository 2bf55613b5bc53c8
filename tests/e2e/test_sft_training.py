"""The SFT cold start on the tiny-random model (the SmolLM2 tokenizer, random weights): the training
text continues the counselor's generation prompt token for token, a short run saves a changed model
the counselor can load, the cached-prefix loss equals the plain one, and `rlff train --stage sft`
caches its result and hands the run a merged model. Seconds each, but they load a tokenizer and train."""

from __future__ import annotations

import json
import math

import pytest
from support.sft_data import dialogue, sft_config

from esc import prompts
from esc.config import build_config
from jobs.train_sft import cold_start, run_train_sft
from learner.sft import generated_tokens, sft_examples


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


def test_the_seeker_stage_trains_the_seeker_model_on_seeker_turns_and_caches_it(tmp_path, capsys):
    import torch

    from esc.models import load_model

    data = sft_config(tmp_path).sft.data
    overrides = ["seeker.model=tiny-random", "seeker_sft.max_steps=2", "seeker_sft.batch_size=2"]
    config = sft_config(tmp_path, *overrides, "seeker_sft.max_examples=4", f"seeker_sft.data={data}")
    config = config.replace("seeker_sft", lr=1e-2, lora_rank=4, cold_start=True)
    assert run_train_sft(config, role="seeker") == 0
    out = tmp_path / "runs" / "local" / "seeker_sft"
    report = json.loads((out / "report.json").read_text())
    assert report["role"] == "seeker" and report["steps"] == 2 and report["examples"] == 4
    assert report["base_model"] == "tiny-random" and not (tmp_path / "runs" / "local" / "sft").exists()
    capsys.readouterr()
    assert run_train_sft(config, role="seeker") == 0  # same inputs: skipped
    assert "seeker SFT model" in capsys.readouterr().out
    started = cold_start(config)
    assert started.seeker.model == str(out.resolve()) and started.counselor == config.counselor
    model, _ = load_model(started.seeker.model)
    initial, _ = load_model("tiny-random", seed=config.seed)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in initial.state_dict().items())
