"""KV caches of recently seen prompt prefixes, so a shared prefix is prefilled once, not once per row.

Every counselor prompt starts with the same system prompt, the G candidates of a GRPO group share
their whole prompt, and turn t+1 of a conversation extends turn t. `CausalLM` asks for the KV of a
batch's common prefix; the entry sharing the longest start with it is copied, cropped to what they
share, and only the rest is computed. Entries are batch-1 transformers caches, oldest evicted first
once they hold more than `max_tokens` tokens together. They describe one set of weights: a change to
any parameter (an optimizer step, `load_weights`) empties the cache on the next lookup.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from typing import Any

import torch


def shared_length(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
    """How many leading tokens a and b have in common."""
    return len(os.path.commonprefix([a, b]))


def weights_fingerprint(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes whenever a parameter is written in place (torch counts in-place writes per tensor) or
    given new memory (`load_into` with shared pages)."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


class PrefixCache:
    def __init__(self, max_tokens: int = 4096, min_tokens: int = 16):
        self.max_tokens, self.min_tokens = max_tokens, min_tokens
        self.entries: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.fingerprint: tuple[int, ...] | None = None
        self.reused_tokens = 0  # prompt tokens not recomputed thanks to the cache, for reports

    def check_weights(self, model: torch.nn.Module) -> None:
        """Forget every entry if the model's weights changed since the entries were computed."""
        fingerprint = weights_fingerprint(model)
        if fingerprint != self.fingerprint:
            self.entries.clear()
            self.fingerprint = fingerprint

    def closest(self, prefix: tuple[int, ...]) -> tuple[Any, int]:
        """(a private copy of the cache of prefix[:n], n) for the largest n any entry offers, or
        (None, 0) when no entry shares at least `min_tokens` with prefix."""
        best, shared = None, 0
        for key in self.entries:
            n = shared_length(key, prefix)
            if n > shared:
                best, shared = key, n
        if best is None or shared < self.min_tokens:
            return None, 0
        self.entries.move_to_end(best)
        cache = copy.deepcopy(self.entries[best])
        if shared < len(best):
            cache.crop(shared - len(best))  # a negative crop removes that many tokens from the end
        self.reused_tokens += shared
        return cache, shared

    def put(self, prefix: tuple[int, ...], cache: Any) -> None:
        """Keep a copy of `cache` (the KV of exactly `prefix`, batch 1)."""
        if len(prefix) > self.max_tokens:
            return
        self.entries[prefix] = copy.deepcopy(cache)
        self.entries.move_to_end(prefix)
        while sum(map(len, self.entries)) > self.max_tokens:
            self.entries.popitem(last=False)
