"""transformers backend: left-padded batched generation on CPU or GPU, with request batching.

Callers await `generate` concurrently; a single worker task takes whatever requests arrived within
`max_wait_ms` (up to `max_batch_size`) and decodes them as one batch in a worker thread, so the event
loop stays free. Decoding is our own KV-cached loop rather than `model.generate`, because each row
keeps its own sampling params and its own seeded RNG: a seeded request yields the same text
whatever it was batched with (up to float rounding of padded batches).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from esc.backends.base import BackendError, Generation, Message, SamplingParams
from esc.models import load_model


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


def _sample_row(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Pick the next token id from one row of logits (vocab,) under the request's params."""
    if params.temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


class HFBackend:
    """Local transformers model behind the InferenceBackend protocol."""

    name = "hf"
    supports_logprobs = True

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int = 8, max_wait_ms: float = 15.0):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.device = next(model.parameters()).device
        self.max_positions = getattr(model.config, "max_position_embeddings", 2048)
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, tokenizer.eos_token_id] if i is not None}
        # transformers renamed `past_key_values` to `cache` (5.x); speak whichever this version knows.
        forward_params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward_params else "past_key_values"
        self._model_lock = threading.Lock()  # one forward at a time; torch uses all threads anyway
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batch_sizes: list[int] = []  # observed batch sizes, for benchmarks and tests

    @classmethod
    def from_config(cls, role_config: Any, seed: int = 0) -> HFBackend:
        device = role_config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer = load_model(role_config.model, device=device, dtype=role_config.dtype, seed=seed)
        return cls(model, tokenizer, role_config.max_batch_size, role_config.max_wait_ms)

    def encode_prompt(self, messages: list[Message], prefill: str = "") -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text + prefill, add_special_tokens=False)["input_ids"]

    # -- generation -------------------------------------------------------------------------------
    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        prompt_ids = self.encode_prompt(messages, params.prefill)
        if len(prompt_ids) + params.max_new_tokens > self.max_positions:
            raise BackendError(
                f"prompt of {len(prompt_ids)} tokens plus {params.max_new_tokens} new tokens exceeds the"
                f" model's context of {self.max_positions}; shorten the conversation or max_new_tokens"
            )
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (e.g. successive asyncio.run calls)
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._serve())
        request = _Request(prompt_ids, params, loop.create_future())
        await self._queue.put(request)
        return await request.future

    async def _serve(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    batch.append(
                        self._queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(
                    self.generate_batch, [r.prompt_ids for r in batch], [r.params for r in batch]
                )
            except Exception as error:  # a failed batch fails its requests, not the worker
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)

    @torch.inference_mode()
    def generate_batch(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        """Decode a batch synchronously. prompts: token ids per row; returns one Generation per row."""
        with self._model_lock:
            return self._decode(prompts, params)

    def _decode(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        rows, width = len(prompts), max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generators = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None for p in params]
        out_ids: list[list[int]] = [[] for _ in range(rows)]
        finish = [""] * rows
        texts = [""] * rows
        stops: list[str | None] = [None] * rows
        past = None
        step_ids, step_pos = input_ids, positions
        for _ in range(max(p.max_new_tokens for p in params)):
            output = self.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kw: past},
            )
            past, logits = getattr(output, self._cache_kw), output.logits[:, -1, :]
            next_ids = []
            for i in range(rows):
                if finish[i]:
                    next_ids.append(pad)
                    continue
                token = _sample_row(logits[i], params[i], generators[i])
                next_ids.append(token)
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
            if all(finish):
                break
            step_ids = torch.tensor(next_ids, device=self.device).unsqueeze(1)
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=self.device)], dim=1)
            step_pos = step_pos[:, -1:] + 1
        results = []
        for i in range(rows):
            text = texts[i] or self.tokenizer.decode(out_ids[i], skip_special_tokens=True)
            results.append(
                Generation(
                    params[i].prefill + text,
                    len(prompts[i]),
                    len(out_ids[i]),
                    finish[i] or "length",
                    stops[i],
                )
            )
        return results

    # -- scoring ----------------------------------------------------------------------------------
    async def continuation_logprobs(self, messages: list[Message], continuations: list[str]) -> list[float]:
        return await asyncio.to_thread(self.score_continuations, messages, continuations)

    @torch.inference_mode()
    def score_continuations(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Summed log p(continuation | messages, assistant start), one forward pass for all of them."""
        prompt = self.encode_prompt(messages)
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(not t for t in tails):
            raise BackendError("every continuation must be non-empty text")
        seqs = [prompt + t for t in tails]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        with self._model_lock:
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        scores = []
        for row, tail in enumerate(tails):
            start = len(prompt) - 1  # logits at position p predict token p + 1
            index = torch.tensor(tail, device=self.device).unsqueeze(1)
            scores.append(float(logprobs[row, start : start + len(tail)].gather(1, index).sum()))
        return scores

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self._loop = None
