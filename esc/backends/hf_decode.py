"""Batched decoding and scoring on a transformers causal LM: synchronous tensor code, no asyncio.

Prompts are left-padded so every row's last real token sits in the last column; position ids come
from the attention mask so padding never shifts positions. Decoding is our own KV-cached loop rather
than `model.generate`, because each row keeps its own sampling params and its own seeded RNG. A row
joins with its prompt read but for the last token; each step reads one token of every row (the
prompt's last, then the one sampled before) and samples the next, so a row's first token comes from
the batched step, not from a forward pass of its own.

With a `PrefixCache`, prompts are not prefilled per row: a decoded prompt's KV comes from the cache
(what it lacks is computed at batch 1 and kept) and is repeated over the rows that share it; scoring
takes the prompts' common start from it, and left-pads each prompt's rest after the shared part.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from esc.backends.base import Generation, SamplingParams
from esc.backends.decode_batch import DecodeBatch, Row
from esc.backends.prefix_cache import PrefixCache
from esc.backends.sampling import sample_tokens, uniform_draws
from esc.backends.shared_start import cache_keyword, common_start

TAIL_ROWS = 16  # tails per second scoring pass (memory: their logits are [rows, width, vocabulary])


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
        """Last-position logits, KV cache, attention mask and positions after reading every prompt.

        A prompt that several rows share (a context's samples, a GRPO group) is read once: the distinct
        prompts are prefilled and their rows repeated."""
        distinct = list(dict.fromkeys(map(tuple, prompts)))
        if len(distinct) == len(prompts):
            return self._prefill_distinct(prompts)
        logits, cache, mask, positions = self._prefill_distinct([list(p) for p in distinct])
        place = {p: i for i, p in enumerate(distinct)}
        index = torch.tensor([place[tuple(p)] for p in prompts], device=self.device)
        cache.batch_select_indices(index)
        return logits[index], cache, mask[index], positions[index]

    def _prefill_distinct(self, prompts: list[list[int]]) -> tuple:
        """`_prefill` of prompts that all differ."""
        cached = self.prefix_cache
        shared = common_start(prompts)
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
        batch, done = DecodeBatch(), {}
        self.admit(batch, prompts, params, list(range(len(prompts))))
        while batch:
            done.update((row.key, row.generation(self.tokenizer)) for row in self.step(batch))
        return [done[i] for i in range(len(prompts))]

    @torch.inference_mode()
    def admit(
        self, batch: DecodeBatch, prompts: list[list[int]], params: list[SamplingParams], keys: list
    ) -> None:
        """Add `prompts` to `batch` as rows named by `keys` (see `batch.can_join`), each prompt read into
        the KV cache but for its last token, which the next step reads with the other rows' tokens.
        With a prefix cache, each distinct prompt's KV comes from it (what it lacks is computed and
        kept), so a context whose samples join a few at a time is read once."""
        if any(len(p) < 2 for p in prompts):
            raise ValueError("a prompt to decode needs at least 2 tokens")
        rows = [
            Row(key, list(prompt), p, torch.Generator().manual_seed(p.seed) if p.seed is not None else None)
            for key, prompt, p in zip(keys, prompts, params, strict=True)
        ]
        if self.prefix_cache is None:
            _, cache, mask, positions = self._prefill([p[:-1] for p in prompts])
            batch.join(rows, cache, mask, positions[:, -1:])
            return
        groups: dict[tuple[int, ...], list[Row]] = {}
        for row in rows:
            groups.setdefault(tuple(row.prompt[:-1]), []).append(row)
        for head, group in groups.items():
            cache = self._prefix_kv(head)
            if len(group) > 1:
                cache.batch_repeat_interleave(len(group))
            mask = torch.ones((len(group), len(head)), dtype=torch.long, device=self.device)
            positions = torch.full((len(group), 1), len(head) - 1, dtype=torch.long, device=self.device)
            batch.join(group, cache, mask, positions)

    @torch.inference_mode()
    def step(self, batch: DecodeBatch, keep_slots: bool = False) -> list[Row]:
        """Read every row's next token, sample one more for each; returns the rows that finished (and
        left the batch). `keep_slots`: rows may join before the next step, so the finished rows leave
        free slots for them (`DecodeBatch.leave`); a slot still free at the next step is dropped then."""
        batch.compact()
        rows = batch.slots
        ids = [[row.sampled[-1] if row.sampled else row.prompt[-1]] for row in rows]
        ones = torch.ones((len(rows), 1), dtype=batch.mask.dtype, device=self.device)
        batch.mask, batch.positions = torch.cat([batch.mask, ones], dim=1), batch.positions + 1
        logits, batch.cache = self._forward(
            torch.tensor(ids, device=self.device), batch.mask, batch.positions, batch.cache
        )
        last = logits[:, -1].float()
        tokens = sample_tokens(last, [r.params for r in rows], uniform_draws([r.generator for r in rows]))
        chosen = torch.log_softmax(last, dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)
        for row, token, logprob in zip(rows, tokens.tolist(), chosen.tolist(), strict=True):
            row.take(token, logprob, self.eos_ids, self.tokenizer)  # the lists: the step's only host copies
        done = [row for row in rows if row.finish]
        batch.leave(done, keep_slots)
        return done

    @torch.inference_mode()
    def score(self, prompts: list[list[int]], tails: list[list[list[int]]]) -> list[list[float]]:
        """Summed log p(tail | prompt) for every tail of every prompt.

        One forward pass over the left-padded prompts gives every tail's first token; the prompts'
        KV cache is then gathered for the multi-token tails, TAIL_ROWS of similar length at a time, for
        a second, short pass (sorting by length keeps the padding of that pass small).
        """
        logits, cache, mask, positions = self._prefill(prompts)
        first = torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()
        scores = [[float(first[b, t[0]]) for t in row] for b, row in enumerate(tails)]
        pairs = [(b, j) for b, row in enumerate(tails) for j, t in enumerate(row) if len(t) > 1]
        pairs.sort(key=lambda pair: len(tails[pair[0]][pair[1]]))
        for start in range(0, len(pairs), TAIL_ROWS):
            part = pairs[start : start + TAIL_ROWS]
            last = start + TAIL_ROWS >= len(pairs)
            self._score_tails(part, tails, cache if last else copy.deepcopy(cache), mask, positions, scores)
        return scores

    def _score_tails(self, pairs, tails, cache, mask, positions, scores) -> None:
        """Add log p(tail[1:] | prompt, tail[0]) to scores[b][j] for each (b, j) in `pairs`; `cache` (the
        prompts' KV) is narrowed to those rows in place."""
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
