"""The supervised baseline: fine-tune the counselor on real ESConv counselor replies with TRL's SFTTrainer.

Owns: turning dialogues into conversational prompt/completion examples that match what the counselor
sees and writes at inference, fitting them into the token budget, and one training run that saves a
model folder `esc.models.load_model` (and so `rlff evaluate --policy`) can load.

Example contract: the prompt is exactly `esc.prompts.counselor_messages(history, reasoning)`. With
reasoning the completion is `<think>R</think>\\n<answer>REPLY</answer>`, where R is written from the
scenario and the turn's annotated support strategy. At inference the counselor is prefilled with
`<think>` right after the generation prompt, so the trained text (generation prompt followed by the
completion) continues exactly where generation does.

Does not know: data specs, run folders, the command line (see jobs/train_sft.py). No Ray here.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from esc import prompts
from esc.config import RunConfig
from esc.schemas import Dialogue, Scenario, Turn

Message = dict[str, str]


class ExamplesDontFitError(ValueError):
    """No example fits the token budget even with its history trimmed; the message says what to raise."""


# What each ESConv support strategy does, in the counselor's own words (the reasoning's second half).
STRATEGY_HINTS: dict[str, str] = {
    "Question": "ask an open question to understand more",
    "Restatement or Paraphrasing": "restate what they said so they feel heard",
    "Reflection of feelings": "name the feelings they describe",
    "Self-disclosure": "share a similar experience to show I understand",
    "Affirmation and Reassurance": "affirm their strengths and reassure them",
    "Providing Suggestions": "offer a gentle, practical suggestion",
    "Information": "give them useful information",
}


def reasoning_text(scenario: Scenario, strategy: str | None) -> str:
    """Short reasoning from the data we have, e.g. 'They feel anxiety about job crisis; Reflection of
    feelings fits: name the feelings they describe.' ESConv's 'Others' (greetings, small talk) and
    turns without a strategy get a generic warm reply."""
    feeling = f"They feel {scenario.emotion_type.lower()} about {scenario.problem_type.lower()}"
    if strategy is None or strategy == "Others":
        return f"{feeling}; a warm, natural reply fits."
    hint = STRATEGY_HINTS.get(strategy)
    return f"{feeling}; {strategy} fits: {hint}." if hint else f"{feeling}; {strategy} fits."


def completion_text(reply: Turn, scenario: Scenario, reasoning: bool) -> str:
    """The assistant text the policy learns to write for `reply` (see the module docstring)."""
    if not reasoning:
        return reply.text.strip()
    thought = reasoning_text(scenario, reply.strategy)
    return f"{prompts.THINK_PREFILL}{thought}</think>\n<answer>{reply.text.strip()}{prompts.ANSWER_CLOSE}"


def sft_examples(
    dialogues: Iterable[Dialogue], reasoning: bool, max_examples: int, seed: int
) -> list[dict[str, list[Message]]]:
    """One conversational prompt/completion example per counselor turn that directly follows a seeker turn.

    Returns dicts `{"prompt": counselor_messages(turns before it, reasoning), "completion": [one
    assistant message]}` (TRL's conversational prompt-completion format). Counselor turns that follow
    another counselor turn, and blank replies, are skipped. When there are more than `max_examples`,
    a seeded random subset is kept, in data order.
    """
    if max_examples <= 0:
        raise ValueError(f"max_examples must be positive, got {max_examples}")
    examples = []
    for dialogue in dialogues:
        turns = dialogue.turns
        for i in range(1, len(turns)):
            reply = turns[i]
            if reply.role != "counselor" or turns[i - 1].role != "seeker" or not reply.text.strip():
                continue
            examples.append(
                {
                    "prompt": prompts.counselor_messages(list(turns[:i]), reasoning),
                    "completion": [
                        {"role": "assistant", "content": completion_text(reply, dialogue.scenario, reasoning)}
                    ],
                }
            )
    if len(examples) <= max_examples:
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
    return [examples[i] for i in chosen]


def token_length(tokenizer: Any, messages: list[Message]) -> int:
    """Tokens of the chat-templated conversation, as the trainer tokenizes it."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fit_examples(
    examples: list[dict[str, list[Message]]], tokenizer: Any, max_tokens: int
) -> tuple[list[dict[str, list[Message]]], int, int]:
    """Make each example fit `max_tokens` (prompt + completion) by dropping the oldest conversation
    messages after the system prompt; the kept history always starts with a seeker (user) message.

    The trainer would otherwise cut the end of long examples, i.e. the reply itself. Returns
    (fitted examples, how many were trimmed, how many were dropped because even the system prompt,
    the last seeker message and the reply exceed the budget).
    """
    fitted, trimmed, dropped = [], 0, 0
    for example in examples:
        system, history = example["prompt"][:1], list(example["prompt"][1:])
        completion = example["completion"]
        length = token_length(tokenizer, system + history + completion)
        was_cut = False
        while length > max_tokens and len(history) > 1:
            # Estimate how many oldest messages to drop (content tokens plus ~5 template tokens each),
            # then measure again: one or two rounds instead of one render per message.
            excess = length - max_tokens
            while excess > 0 and len(history) > 1:
                excess -= len(tokenizer(history.pop(0)["content"], add_special_tokens=False)["input_ids"]) + 5
            while len(history) > 1 and history[0]["role"] != "user":
                history.pop(0)
            length = token_length(tokenizer, system + history + completion)
            was_cut = True
        if length > max_tokens:
            dropped += 1
            continue
        trimmed += was_cut
        fitted.append({"prompt": system + history, "completion": completion})
    return fitted, trimmed, dropped


def train_sft(
    config: RunConfig, examples: list[dict[str, list[Message]]], out_dir: str | Path
) -> dict[str, Any]:
    """Fine-tune `config.counselor.model` on `examples` (from `sft_examples`) and save it to `out_dir`.

    Loss is on the completion only; `config.sft` gives max_steps, lr, batch_size and max_tokens (the
    budget per example, see `fit_examples`). Runs on CUDA when available (bf16 autocast), else on CPU
    in float32. Saves no intermediate checkpoints; the final weights (safetensors) and tokenizer go to
    `out_dir`, loadable with `esc.models.load_model(str(out_dir))`.

    Returns {steps, first_loss, last_loss, losses (one per step), seconds (training loop only),
    seconds_per_step, examples (after fitting), examples_trimmed, examples_dropped, model (out_dir)}.
    """
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from esc.models import load_model

    if not examples:
        raise ValueError("train_sft needs at least one example")
    sft = config.sft
    cuda = torch.cuda.is_available()
    model, tokenizer = load_model(config.counselor.model, device="cuda" if cuda else "cpu", seed=config.seed)
    fitted, trimmed, dropped = fit_examples(examples, tokenizer, sft.max_tokens)
    if not fitted:
        raise ExamplesDontFitError(
            f"no example fits sft.max_tokens={sft.max_tokens}, not even with its history trimmed; raise it"
        )
    out = Path(out_dir)
    args = TRLSFTConfig(
        output_dir=str(out),
        max_steps=sft.max_steps,
        learning_rate=sft.lr,
        per_device_train_batch_size=sft.batch_size,
        max_length=sft.max_tokens,
        completion_only_loss=True,
        # TRL defaults to bf16 and activation checkpointing: bf16 needs a GPU that has it, and
        # checkpointing only trades time for memory a 135M model does not need.
        bf16=cuda and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,
        use_cpu=not cuda,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(fitted), processing_class=tokenizer
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    trained = trainer.model
    trained.eval()
    trained.save_pretrained(out)
    tokenizer.save_pretrained(out)
    steps = trainer.state.global_step
    return {
        "steps": steps,
        "first_loss": losses[0] if losses else math.nan,
        "last_loss": losses[-1] if losses else math.nan,
        "losses": losses,
        "seconds": seconds,
        "seconds_per_step": seconds / steps if steps else math.nan,
        "examples": len(fitted),
        "examples_trimmed": trimmed,
        "examples_dropped": dropped,
        "model": str(out),
    }
