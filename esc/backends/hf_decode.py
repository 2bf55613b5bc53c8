"""Batched decoding and scoring on a transformers causal LM: synchronous tensor code, no asyncio.

Prompts are left-padded so every row's last real token sits in the last column; position ids come
from the attention mask so padding never shifts positions. Decoding is our own KV-cached loop rather
than `model.generate`, because each row keeps its own sampling params and its own seeded RNG.

With a `PrefixCache`, the prompts' common start is not prefilled per row: its KV comes from the cache
(computed once, at batch 1) and is repeated over the rows; only the rest of each prompt is prefilled,
left-padded after the shared part, so the padding sits between the prefix and each row's own tokens.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from esc.backends.base import Generation, SamplingParams
from esc.backends.prefix_cache import PrefixCache, shared_length
from esc.backends.sampling import sample_tokens, uniform_draws


class CausalLM:
    """A model and tokenizer plus what batched decoding needs to know about them."""

    def __init__(self, model: Any, tokenizer: Any, prefix_cache: PrefixCache | None = None):
        self.model, self.tokenizer, self.prefix_cache = model, tokenizer, prefix_cache
        self.device = next(model.parameters()).device
        self.pad = tokenizer.pad_token_id
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, tokenizer.eos_token_id] if i is not None}
        self.cache_kw = cache_keyword(model)

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.tensor([[self.pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)

    def _forward(self, ids, mask, positions, cache=None, last_only=True):
        """Logits (of the last position only, unless last_only is False) and the updated KV cache."""
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1 if last_only else 0,
            **{self.cache_kw: cache},
        )
        return out.logits, getattr(out, self.cache_kw)

    def _prefill(self, prompts: list[list[int]]) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
        """Last-position logits, KV cache, attention mask and positions after reading every prompt."""
        cached = self.prefix_cache
        shared = min(shared_length(prompts[0], p) for p in prompts)
        shared = min(shared, min(map(len, prompts)) - 1)  # every row keeps a token of its own to read
        if cached is None or shared < cached.min_tokens:
            ids, mask, positions = self._left_pad(prompts)
            logits, cache = self._forward(ids, mask, positions)
            return logits, cache, mask, positions
        cache = self._prefix_kv(tuple(prompts[0][:shared]))
        cache.batch_repeat_interleave(len(prompts))
        ids, own_mask, own_positions = self._left_pad([p[shared:] for p in prompts])
        ones = torch.ones((len(prompts), shared), dtype=own_mask.dtype, device=self.device)
        mask, positions = torch.cat([ones, own_mask], dim=1), own_positions + shared
        logits, cache = self._forward(ids, mask, positions, cache)
        return logits, cache, mask, positions

    def _prefix_kv(self, prefix: tuple[int, ...]) -> Any:
        """A private batch-1 KV cache of `prefix`: the cached part copied, the rest computed (and kept)."""
        cached = self.prefix_cache
        cached.check_weights(self.model)
        cache, done = cached.closest(prefix)
        if done < len(prefix):
            ids = torch.tensor([prefix[done:]], device=self.device)
            mask = torch.ones((1, len(prefix)), dtype=torch.long, device=self.device)
            positions = torch.arange(done, len(prefix), device=self.device).unsqueeze(0)
            cache = self._forward(ids, mask, positions, cache)[1]
            cached.put(prefix, cache)
        return cache

    @torch.inference_mode()
    def decode(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        """Generate one reply per prompt (token ids), each under its own SamplingParams."""
        rows = len(prompts)
        logits, cache, mask, positions = self._prefill(prompts)
        step_pos = positions[:, -1:]
        generators = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None for p in params]
        out_ids: list[list[int]] = [[] for _ in range(rows)]
        sampled: list[list[int]] = [[] for _ in range(rows)]  # out_ids plus a final end-of-turn token
        sampled_lp: list[list[float]] = [[] for _ in range(rows)]
        finish, texts = [""] * rows, [""] * rows
        stops: list[str | None] = [None] * rows
        budget = max(p.max_new_tokens for p in params)
        for step in range(budget):
            last = logits[:, -1].float()
            tokens = sample_tokens(last, params, uniform_draws(generators))
            chosen = torch.log_softmax(last, dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)
            tokens, chosen = tokens.tolist(), chosen.tolist()  # the step's only device->host copies
            next_ids = []
            for i in range(rows):
                token = self.pad if finish[i] else tokens[i]
                next_ids.append(token)
                if finish[i]:
                    continue
                sampled[i].append(token)
                sampled_lp[i].append(chosen[i])
                if token in self.eos_ids:
                    finish[i] = "stop"
                    continue
                out_ids[i].append(token)
                if params[i].stop:
                    text = self.tokenizer.decode(out_ids[i], skip_special_tokens=True)
                    hits = sorted((text.index(s), s) for s in params[i].stop if s in text)
                    if hits:
                        texts[i], finish[i], stops[i] = text[: hits[0][0]], "stop", hits[0][1]
                        continue
                if len(out_ids[i]) >= params[i].max_new_tokens:
                    finish[i] = "length"
            if all(finish) or step == budget - 1:
                break
            step_ids = torch.tensor(next_ids, device=self.device).unsqueeze(1)
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=self.device)], dim=1)
            step_pos = step_pos + 1
            logits, cache = self._forward(step_ids, mask, step_pos, cache)
        return [
            Generation(
                params[i].prefill + (texts[i] or self.tokenizer.decode(out_ids[i], skip_special_tokens=True)),
                len(prompts[i]),
                len(out_ids[i]),
                finish[i] or "length",
                stops[i],
                prompt_ids=tuple(prompts[i]),
                token_ids=tuple(sampled[i]),
                token_logprobs=tuple(sampled_lp[i]),
            )
            for i in range(rows)
        ]

    @torch.inference_mode()
    def score(self, prompts: list[list[int]], tails: list[list[list[int]]]) -> list[list[float]]:
        """Summed log p(tail | prompt) for every tail of every prompt.

        One forward pass over the left-padded prompts gives every tail's first token; the prompts'
        KV cache is then gathered once per multi-token tail for a second, short pass.
        """
        logits, cache, mask, positions = self._prefill(prompts)
        first = torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()
        scores = [[float(first[b, t[0]]) for t in row] for b, row in enumerate(tails)]
        pairs = [(b, j) for b, row in enumerate(tails) for j, t in enumerate(row) if len(t) > 1]
        if not pairs:
            return scores
        rows = torch.tensor([b for b, _ in pairs], device=self.device)
        cache.batch_select_indices(rows)
        width = max(len(tails[b][j]) - 1 for b, j in pairs)
        more = torch.tensor(
            [tails[b][j][:-1] + [self.pad] * (width - len(tails[b][j]) + 1) for b, j in pairs],
            device=self.device,
        )
        more_mask = torch.cat(
            [mask[rows], torch.ones((len(pairs), width), dtype=mask.dtype, device=self.device)], 1
        )
        more_pos = positions[rows, -1:] + 1 + torch.arange(width, device=self.device)
        logits = self._forward(more, more_mask, more_pos, cache, last_only=False)[0]
        targets = torch.tensor(
            [tails[b][j][1:] + [0] * (width - len(tails[b][j]) + 1) for b, j in pairs], device=self.device
        )
        picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()
        for row, (b, j) in enumerate(pairs):
            scores[b][j] += float(picked[row, : len(tails[b][j]) - 1].sum())
        return scores


def cache_keyword(model: Any) -> str:
    """The forward() keyword for a KV cache: transformers renamed `past_key_values` to `cache` (5.x)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
