"""The cold-start SFT: fine-tune the counselor on real ESConv counselor replies in its own format.

Owns: turning dialogues into conversational prompt/completion examples that match what the counselor
sees and writes at inference, fitting them into the token budgets (reply length, example length), and
one training run (a short loop, LoRA or every weight) that saves a model folder `esc.models.load_model`
(and so `rlff run` with `sft.cold_start` and `rlff evaluate --policy`) can load.

Example contract: the prompt is exactly `esc.prompts.counselor_messages(history, reasoning)`. With
reasoning the completion is `<think>R</think>\\n<answer>REPLY</answer>`, where R is a short, fixed-shape
sentence from the scenario and the turn's annotated support strategy. At inference the counselor is
prefilled with `<think>` right after the generation prompt, so the trained text (generation prompt
followed by the completion) continues exactly where generation does.

Does not know: data specs, run folders, the command line (see jobs/train_sft.py). No Ray here.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from esc import prompts
from esc.config import RunConfig, SFTConfig
from esc.models import bf16_autocast, use_bf16
from esc.schemas import Dialogue, Scenario

Message = dict[str, str]


class ExamplesDontFitError(ValueError):
    """No example fits the token budget even with its history trimmed; the message says what to raise."""


# What each ESConv support strategy does, in a few words: the reasoning's second half. Short and fixed
# phrases, so a small model learns the reasoning in a few dozen steps and spends few tokens on it.
STRATEGY_HINTS: dict[str, str] = {
    "Question": "ask an open question",
    "Restatement or Paraphrasing": "restate what they said",
    "Reflection of feelings": "name their feelings",
    "Self-disclosure": "share a similar experience",
    "Affirmation and Reassurance": "affirm and reassure them",
    "Providing Suggestions": "offer a gentle suggestion",
    "Information": "give useful information",
}
GENERIC_HINT = "reply warmly"  # ESConv's 'Others' (greetings, small talk) and turns without a strategy
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def reasoning_text(scenario: Scenario, strategy: str | None) -> str:
    """Short reasoning from the data we have, e.g. 'They feel anxiety about job crisis; name their
    feelings.' Strategies outside STRATEGY_HINTS are named as they are."""
    generic = strategy is None or strategy == "Others"
    hint = GENERIC_HINT if generic else STRATEGY_HINTS.get(strategy, strategy)
    return f"They feel {scenario.emotion_type.lower()} about {scenario.problem_type.lower()}; {hint}."


def cap_reply(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> str | None:
    """The longest run of whole leading sentences of `text` within `max_tokens` (by `count_tokens`),
    or None when even the first sentence is longer (the reply is then left out, not cut mid-sentence)."""
    text = text.strip()
    if count_tokens(text) <= max_tokens:
        return text
    kept = None
    sentences = _SENTENCE_END.split(text)
    for end in range(1, len(sentences)):
        candidate = " ".join(sentences[:end])
        if count_tokens(candidate) > max_tokens:
            break
        kept = candidate
    return kept


def completion_text(reply: str, scenario: Scenario, strategy: str | None, reasoning: bool) -> str:
    """The assistant text the policy learns to write for the reply `reply` (see the module docstring)."""
    if not reasoning:
        return reply
    thought = reasoning_text(scenario, strategy)
    return f"{prompts.THINK_PREFILL}{thought}</think>\n<answer>{reply}{prompts.ANSWER_CLOSE}"


def sft_examples(
    dialogues: Iterable[Dialogue],
    reasoning: bool,
    max_examples: int,
    seed: int,
    cap: Callable[[str], str | None] | None = None,
    max_turns: int = 0,
) -> list[dict[str, list[Message]]]:
    """One conversational prompt/completion example per counselor turn that directly follows a seeker turn.

    Returns dicts `{"prompt": counselor_messages(turns before it, reasoning, max_turns), "completion": [one
    assistant message]}` (TRL's conversational prompt-completion format). Counselor turns that follow
    another counselor turn, and blank replies, are skipped. `cap` (e.g. `cap_reply` with a tokenizer)
    maps each reply to the text trained on, or to None to skip it. When more than `max_examples`
    remain, a seeded random subset is kept, in data order.
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
            text = reply.text.strip() if cap is None else cap(reply.text)
            if not text:
                continue
            completion = completion_text(text, dialogue.scenario, reply.strategy, reasoning)
            examples.append(
                {
                    "prompt": prompts.counselor_messages(list(turns[:i]), reasoning, max_turns),
                    "completion": [{"role": "assistant", "content": completion}],
                }
            )
    if len(examples) <= max_examples:
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
    return [examples[i] for i in chosen]


def generated_tokens(tokenizer: Any, example: dict[str, list[Message]]) -> int:
    """Tokens the counselor generates to write this example's completion at inference: the rendered
    conversation minus the generation prompt and the prefilled `<think>` (reasoning completions start
    with it), up to the end of the completion text (the template's end-of-turn is not generated)."""
    prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
    content = example["completion"][0]["content"]
    prefill = prompts.THINK_PREFILL if content.startswith(prompts.THINK_PREFILL) else ""
    before = len(tokenizer(prompt + prefill, add_special_tokens=False)["input_ids"])
    return len(tokenizer(prompt + content, add_special_tokens=False)["input_ids"]) - before


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


def tokenize_example(tokenizer: Any, example: dict[str, list[Message]]) -> tuple[list[int], int]:
    """(token ids of the chat-templated conversation, index of its first completion token)."""
    prompt = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    return (
        tokenizer(full, add_special_tokens=False)["input_ids"],
        len(tokenizer(prompt, add_special_tokens=False)["input_ids"]),
    )


def shared_prefix(sequences: list[list[int]], limit: int) -> int:
    """Length of the token prefix every sequence starts with (the system prompt), at most `limit`."""
    first, length = sequences[0], min(limit, *(len(s) for s in sequences))
    for index in range(length):
        if any(s[index] != first[index] for s in sequences):
            return index
    return length


def completion_loss(model: Any, prefix: list[int], rows: list[tuple[list[int], int]], pad_id: int) -> Any:
    """Mean cross-entropy of the completion tokens of `rows` ((ids, completion start) pairs that all
    start with `prefix`): the prefix runs once without gradients and the rows, right-padded, attend to
    its cached keys and values. Equals the loss over the full sequences up to float rounding."""
    import torch

    device = next(model.parameters()).device
    shared = len(prefix)
    width = max(len(ids) for ids, _ in rows) - shared
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for row, (ids, start) in enumerate(rows):
        tail = torch.tensor(ids[shared:])
        input_ids[row, : len(tail)] = tail
        labels[row, start - shared : len(tail)] = tail[start - shared :]
        mask[row, shared : shared + len(tail)] = 1
    cache = None
    if shared:
        with torch.no_grad():
            cache = model(input_ids=torch.tensor([prefix], device=device), use_cache=True).cache
        cache.batch_repeat_interleave(len(rows))
    output = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        labels=labels.to(device),
        cache=cache,
        use_cache=cache is not None,
    )
    return output.loss


def _train_steps(
    model: Any,
    encoded: list[tuple[list[int], int]],
    prefix: list[int],
    pad_id: int,
    sft: SFTConfig,
    seed: int,
    device: str,
) -> tuple[list[float], float]:
    """Train `model`'s trainable weights for `sft.max_steps` steps of `sft.batch_size` rows of `encoded`
    (a seeded shuffle, taken in turn and wrapped around), with AdamW at `sft.lr` decaying linearly to 0;
    bf16 autocast on CUDA, and on a CPU when `sft.bf16` is set. Prints the loss about eight times.

    Returns (one loss per step, seconds the steps took).
    """
    import torch

    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed)).tolist()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=sft.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / sft.max_steps)
    autocast = bf16_autocast(device, enabled=device.startswith("cuda") or use_bf16(sft.bf16, device))
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(sft.max_steps):
        picked = [order[(step * sft.batch_size + i) % len(order)] for i in range(sft.batch_size)]
        with autocast:
            loss = completion_loss(model, prefix, [encoded[i] for i in picked], pad_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if (step + 1) % max(1, sft.max_steps // 8) == 0 or step + 1 == sft.max_steps:  # ~8 lines in all
            print(f"sft step {step + 1}/{sft.max_steps} loss {losses[-1]:.3f}", flush=True)
    return losses, time.perf_counter() - started


def _save(model: Any, tokenizer: Any, lora_rank: int, out_dir: str | Path) -> Path:
    """Merge the LoRA adapters into the weights (when `lora_rank` is set) and save the model and
    tokenizer to `out_dir`; returns it as a Path."""
    if lora_rank:
        model = model.merge_and_unload()
    model.eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def train_sft(
    config: RunConfig, examples: list[dict[str, list[Message]]], out_dir: str | Path, role: str = "counselor"
) -> dict[str, Any]:
    """Fine-tune `config.counselor.model` on `examples` (from `sft_examples`) and save it to `out_dir`:
    LoRA adapters of rank `sft.lora_rank` on every linear layer but the LM head, merged into the saved
    weights, or every weight when the rank is 0.

    The loss is the mean cross-entropy of the completion tokens (the chat template's end of turn
    included); `config.sft` gives max_steps, lr (AdamW, linear decay to 0), batch_size and max_tokens
    (the budget per example, see `fit_examples`). Batches are drawn from a seeded shuffle, epoch after
    epoch. Every example opens with the same system prompt, so each step runs that shared prefix once,
    without gradients, and the batch attends to its cached keys and values: on a CPU this halves the
    work per example, and the weights still learn everything the completions need. Runs on CUDA when
    available (bf16 autocast), else on CPU (under bf16 autocast when the settings' `bf16` is set, else in
    float32). The final weights (safetensors) and tokenizer go to `out_dir`, loadable with
    `esc.models.load_model(str(out_dir))`.

    `role` "seeker": `config.seeker.model` on examples from `learner.seeker_sft.seeker_examples`, with
    the settings of `config.seeker_sft` instead of `config.sft`.

    Returns {steps, first_loss, last_loss, losses (one per step), seconds (training loop only),
    seconds_per_step, examples (after fitting), examples_trimmed, examples_dropped, model (out_dir)}.
    """
    import torch

    from esc.models import load_model

    if not examples:
        raise ValueError("train_sft needs at least one example")
    if role not in ("counselor", "seeker"):
        raise ValueError(f"train_sft trains the counselor or the seeker, not {role!r}")
    sft = config.sft if role == "counselor" else config.seeker_sft
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model(getattr(config, role).model, device=device, seed=config.seed)
    fitted, trimmed, dropped = fit_examples(examples, tokenizer, sft.max_tokens)
    if not fitted:
        raise ExamplesDontFitError(
            f"no example fits {'sft' if role == 'counselor' else 'seeker_sft'}.max_tokens={sft.max_tokens},"
            " not even with its history trimmed; raise it"
        )
    encoded = [tokenize_example(tokenizer, e) for e in fitted]
    shared = shared_prefix([ids for ids, _ in encoded], min(start for _, start in encoded))
    prefix = encoded[0][0][:shared]
    torch.manual_seed(config.seed)
    if sft.lora_rank:
        from learner.lora import add_lora

        model = add_lora(model, sft.lora_rank)
    losses, seconds = _train_steps(model, encoded, prefix, tokenizer.pad_token_id, sft, config.seed, device)
    out = _save(model, tokenizer, sft.lora_rank, out_dir)
    steps = len(losses)
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
