"""The inference backend protocol shared by every LLM role.

Backends take chat messages (OpenAI-style dicts), not raw prompts, so the same role code runs on a
local transformers model, a vLLM engine or a remote OpenAI-compatible server. `visible_text` is what
a streaming backend may show of a reply that is still growing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class BackendError(RuntimeError):
    """A backend failed in a way the caller should report to a person (one sentence)."""


class PromptTooLong(BackendError):
    """A prompt of `tokens` tokens plus `new_tokens` to generate does not fit the model's context of
    `limit`: the caller's input, not a failure (the endpoint answers it with a 400)."""

    def __init__(self, tokens: int, new_tokens: int, limit: int):
        super().__init__(
            f"prompt of {tokens} tokens plus {new_tokens} new tokens exceeds the model's context of"
            f" {limit}; shorten the conversation or max_new_tokens"
        )
        self.tokens, self.new_tokens, self.limit = tokens, new_tokens, limit


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling settings.

    temperature 0 means greedy decoding. `seed` makes sampling reproducible for this request
    regardless of what it is batched with (hf backend). `stop` strings end the reply early and are
    not included in it. `late_stop` strings do too, but only after the reply's first `late_stop_after`
    (any case): an API client's stop strings for the answer of a counselor that thinks first. The hf
    backend honours them; the others ignore them (the endpoint cuts its answers all the same).
    `prefill` is text the assistant reply is forced to start with; it is included at the start of
    `Generation.text`. Backends that cannot prefill ignore it.
    """

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 96
    seed: int | None = None
    stop: tuple[str, ...] = ()
    prefill: str = ""
    late_stop: tuple[str, ...] = ()
    late_stop_after: str = ""


@dataclass(frozen=True)
class Generation:
    """One reply. `completion_tokens` counts generated tokens only (not prompt or prefill).

    `stop_sequence` is the stop string that ended the reply (excluded from `text`), where the backend
    can tell; None when it ended at end-of-turn, at the length limit, or the backend cannot tell.
    `weights_version` is the version of the weights that produced every token, where the backend
    tracks versions (hf); None otherwise.

    Where the backend exposes them (hf), the learner's inputs travel along: `prompt_ids` (the prompt
    tokens, prefill included), `token_ids` (every sampled token, including a final end-of-turn token
    and the tokens of a stop string) and `token_logprobs` (log p of each sampled token under the
    untempered model that sampled it: the behaviour policy). Empty tuples elsewhere.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    stop_sequence: str | None = None
    weights_version: int | None = None
    prompt_ids: tuple[int, ...] = ()
    token_ids: tuple[int, ...] = ()
    token_logprobs: tuple[float, ...] = ()


@runtime_checkable
class InferenceBackend(Protocol):
    """What every role needs from a model.

    `generate` may be awaited by many callers at once; a backend batches requests that arrive
    together. `continuation_logprobs` returns, for each continuation, the summed log-probability of
    its tokens when it directly follows the assistant turn start of `messages`; backends that cannot
    compute it set `supports_logprobs = False` and raise BackendError.
    """

    name: str
    supports_logprobs: bool

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation: ...

    async def continuation_logprobs(
        self, messages: list[Message], continuations: list[str]
    ) -> list[float]: ...

    async def close(self) -> None: ...


async def stream_generation(
    backend: InferenceBackend, messages: list[Message], params: SamplingParams
) -> AsyncIterator[str | Generation]:
    """The reply's text so far, each time it grows, then its `Generation`: token by token on backends
    with `generate_stream` (hf), else the whole text at once when it is done."""
    streaming = getattr(backend, "generate_stream", None)
    if streaming is not None:
        async with aclosing(streaming(messages, params)) as items:  # closed early: frees the row now
            async for item in items:
                yield item
        return
    generation = await backend.generate(messages, params)
    yield generation.text
    yield generation


def first_stop(text: str, params: SamplingParams) -> tuple[int, str] | None:
    """Where the first stop string of `params` starts in a reply's `text` (prefill not included), and
    which: a `stop` string anywhere, a `late_stop` one only after the first `late_stop_after` (any
    case) and the blanks that follow it, which a parsed answer drops."""
    hits = [(text.index(s), s) for s in params.stop if s in text]
    after = re.escape(params.late_stop_after) + r"\s*"
    opened = re.search(after, text, re.IGNORECASE) if params.late_stop else None
    if opened is not None and opened.end() < len(text):  # once the answer has begun
        start = opened.end()
        hits += [(text.index(s, start), s) for s in params.late_stop if s in text[start:]]
    return min(hits) if hits else None


def visible_text(text: str, stops: tuple[str, ...]) -> str:
    """What of a growing reply may be shown: up to the first stop string, and short of any ending
    that could still grow into one, or that is a character still being decoded (U+FFFD)."""
    hits = [text.index(s) for s in stops if s in text]
    if hits:
        return text[: min(hits)]
    cut = len(text)
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                cut = min(cut, len(text) - size)
                break
    return text[:cut].rstrip("\ufffd")
