"""transformers backend: batched generation and scoring on CPU or GPU, behind an asyncio batcher.

Callers await `generate` and `continuation_logprobs` concurrently. One worker task runs the model in
worker threads, so the event loop stays free, with continuous batching: requests that arrive within
`max_wait_ms` of an idle backend start a batch together; requests arriving while it decodes join it
between two decode steps (up to `max_batch_size` rows), and each row is answered as soon as it is done.
Scoring requests run between steps. A seeded request yields the same text whatever it was batched
with (up to float rounding). `generate_stream` yields a reply's text as each step extends it; a caller
that stops listening (or cancels `generate`) frees its row before the next step."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from esc.backends.base import BackendError, Generation, Message, PromptTooLong, SamplingParams, visible_text
from esc.backends.decode_attention import use_decode_attention
from esc.backends.decode_batch import DecodeBatch
from esc.backends.decode_linear import use_decode_linear
from esc.backends.hf_decode import CausalLM
from esc.backends.prefix_cache import PrefixCache
from esc.memory import release_free_memory
from esc.models import in_passing_thread, load_model

TRIM_EVERY_STEPS = 64  # under steady load the batch never drains: give freed memory back this often


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams | None  # None for a scoring request
    tails: list[list[int]] | None  # continuation token ids, scoring requests only
    future: asyncio.Future = field(repr=False)
    # streaming requests only: the reply's token ids after each step, then the finished future itself
    updates: asyncio.Queue | None = field(default=None, repr=False)


class HFBackend:
    """Local transformers model behind the InferenceBackend protocol."""

    name = "hf"
    supports_logprobs = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int = 8,
        max_wait_ms: float = 15.0,
        prefix_cache_tokens: int = 4096,
    ):
        cache = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens > 0 else None
        use_decode_linear(model)  # decode steps' products through our kernel (decode_linear.py)
        use_decode_attention(model)  # and their attention (decode_attention.py)
        self.lm = CausalLM(model, tokenizer, cache)
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_positions = getattr(model.config, "max_position_embeddings", 2048)
        self._model_lock = threading.Lock()  # one batch at a time; torch already uses every core
        self._idle = threading.Condition(self._model_lock)  # notified when the running batch empties
        self._running = DecodeBatch()  # rows being decoded (continuous batching), touched under the lock
        self._swaps_waiting = 0  # load_weights calls waiting for the running batch to drain
        self._steps = 0
        # OpenMP's thread count is per thread: batches run in worker threads, which would otherwise get
        # OMP_NUM_THREADS (1 in a Ray actor reserving under 2 CPUs) whatever the actor set
        self.torch_threads = torch.get_num_threads()
        # every batch stage runs on this one thread: one OpenMP team and one heap, where a pool of
        # threads would leave idle teams spinning on the cores the working one needs
        self._model_thread = self._new_model_thread()
        self.weights_version = 0  # 0 = the weights it was built with; load_weights moves it
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batch_sizes: list[int] = []  # observed generation batch sizes, for benchmarks and tests
        self.stats = {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "decode_s": 0.0,
            "score_batches": 0,
            "score_s": 0.0,
        }

    @classmethod
    def from_config(cls, role_config: Any, seed: int = 0) -> HFBackend:
        device = role_config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer = load_model(role_config.model, device=device, dtype=role_config.dtype, seed=seed)
        return cls(
            model,
            tokenizer,
            role_config.max_batch_size,
            role_config.max_wait_ms,
            role_config.prefix_cache_tokens,
        )

    def encode_prompt(self, messages: list[Message], prefill: str = "") -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text + prefill, add_special_tokens=False)["input_ids"]

    def _check_length(self, tokens: int, new_tokens: int) -> None:
        if tokens + new_tokens > self.max_positions:
            raise PromptTooLong(tokens, new_tokens, self.max_positions)

    async def _submit(self, request: _Request):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (e.g. successive asyncio.run calls)
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._serve())
            self._worker.add_done_callback(self._fail_pending)
        request.future = loop.create_future()
        if request.updates is not None:
            request.future.add_done_callback(request.updates.put_nowait)
        await self._queue.put(request)
        return await request.future

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        prompt_ids = self.encode_prompt(messages, params.prefill)
        self._check_length(len(prompt_ids), params.max_new_tokens)
        return await self._submit(_Request(prompt_ids, params, None, None))

    async def generate_stream(
        self, messages: list[Message], params: SamplingParams
    ) -> AsyncIterator[str | Generation]:
        """The reply as it is written: the text so far (prefill included) after every decode step that
        changed it, then the finished `Generation`. Text is held back while it may still become a stop
        string or ends in a half-decoded character. Closing the iterator early frees the row."""
        prompt_ids = self.encode_prompt(messages, params.prefill)
        self._check_length(len(prompt_ids), params.max_new_tokens)
        request = _Request(prompt_ids, params, None, None, updates=asyncio.Queue())
        answered = asyncio.ensure_future(self._submit(request))
        shown = ""
        try:
            while True:
                update = await request.updates.get()
                if isinstance(update, asyncio.Future):
                    yield await answered
                    return
                text = visible_text(self.tokenizer.decode(update, skip_special_tokens=True), params.stop)
                if text != shown:
                    shown = text
                    yield params.prefill + text
        finally:
            answered.cancel()  # cancels the request's future too: the worker drops the row

    async def continuation_logprobs(self, messages: list[Message], continuations: list[str]) -> list[float]:
        prompt_ids = self.encode_prompt(messages)
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if not tails or any(not t for t in tails):
            raise BackendError("continuation_logprobs needs one or more non-empty continuations")
        self._check_length(len(prompt_ids), max(len(t) for t in tails))
        return await self._submit(_Request(prompt_ids, None, tails, None))

    def _fail_pending(self, worker: asyncio.Task) -> None:
        """If the worker ever stops, fail queued requests instead of leaving callers waiting forever."""
        queue = self._queue
        error = BackendError("the hf backend's batching worker stopped; recreate the backend")
        while queue is not None and not queue.empty():
            request = queue.get_nowait()
            if not request.future.done():
                request.future.set_exception(error)

    async def _next_batch(self) -> list[_Request]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())
                else:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        return batch

    def _arrived(self) -> list[_Request]:
        """Whatever is queued, without waiting (the batch is decoding)."""
        arrived = []
        while not self._queue.empty():
            arrived.append(self._queue.get_nowait())
        return arrived

    async def _serve(self) -> None:
        """Continuous batching: between decode steps, queued requests join the running batch (up to
        `max_batch_size` rows) and scoring requests run; finished rows are answered at once. While a
        weight swap waits, no row joins, so the batch drains within one reply's length."""
        waiting: list[_Request] = []
        try:
            while True:
                waiting = [r for r in waiting if not r.future.done()]  # callers that gave up
                self._drop_abandoned()
                idle = not self._running and not waiting
                arrived = await self._next_batch() if idle else self._arrived()
                scoring = [r for r in arrived if r.params is None]
                waiting += [r for r in arrived if r.params is not None]
                if scoring:
                    prompts, tails = [r.prompt_ids for r in scoring], [r.tails for r in scoring]
                    await self._run(scoring, self.score_batch, prompts, tails)
                room = self.max_batch_size - len(self._running)
                if waiting and self._swaps_waiting:
                    if not self._running:
                        await asyncio.to_thread(self._wait_for_swaps)
                elif waiting and room > 0 and self._running.can_join():
                    joining, waiting = waiting[:room], waiting[room:]
                    await self._run_rows(joining, self._admit, joining)
                if self._running:  # rows that finish leave their slots to the next to join
                    await self._run_rows(self._running_requests(), self._step, not self._swaps_waiting)
        finally:  # cancelled (its event loop closed) or failed: nothing may wait on these rows
            with self._idle:
                pending = [*waiting, *self._running_requests()]
                self._running = DecodeBatch()
                self._idle.notify_all()
            error = BackendError("the hf backend's batching worker stopped before answering")
            for request in pending:
                if not request.future.done():
                    request.future.set_exception(error)

    def _drop_abandoned(self) -> None:
        """Remove running rows whose caller cancelled (a closed stream, a disconnected client)."""
        keep = [i for i, row in enumerate(self._running.rows) if not row.key.future.done()]
        if len(keep) < len(self._running):
            with self._idle:
                self._running.keep(keep)
                self._idle.notify_all()

    def _running_requests(self) -> list[_Request]:
        return [row.key for row in self._running.rows]

    async def _run_rows(self, requests: list[_Request], fn, *args) -> None:
        """Run a decode stage on the model thread; answer the rows it finished, or fail `requests` if it
        raised."""
        try:
            finished = await self._on_model_thread(fn, *args)
        except Exception as error:  # a failed stage fails the rows it touched, not the worker
            with self._idle:
                gone = {id(r) for r in requests}
                self._running.keep([i for i, r in enumerate(self._running.rows) if id(r.key) not in gone])
                self._idle.notify_all()
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        for request, generation in finished or []:
            if not request.future.done():
                request.future.set_result(generation)
        for row in self._running.rows:  # the model thread is idle now: the rows are ours to read
            if row.key.updates is not None and row.out_ids:
                row.key.updates.put_nowait(list(row.out_ids))

    async def _run(self, requests: list[_Request], fn, *args) -> None:
        try:
            results = await self._on_model_thread(fn, *args)
        except Exception as error:  # a failed batch fails its requests, not the worker
            results = [error] * len(requests)
        for request, result in zip(requests, results, strict=True):
            if request.future.done():
                continue
            if isinstance(result, Exception):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    async def _on_model_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)

    def _new_model_thread(self) -> ThreadPoolExecutor:
        """A one-thread pool for the model (its thread starts at the first stage submitted to it)."""
        return ThreadPoolExecutor(
            1, "hf-model", initializer=torch.set_num_threads, initargs=(self.torch_threads,)
        )

    def _admit(self, requests: list[_Request]) -> None:
        """Prefill `requests` and join them to the running batch (on the model thread)."""
        with self._idle:
            started = time.perf_counter()
            prompts, params = [r.prompt_ids for r in requests], [r.params for r in requests]
            self.lm.admit(self._running, prompts, params, requests)
            self.stats["decode_s"] += time.perf_counter() - started
        self.batch_sizes.append(len(self._running))
        self.stats["prompt_tokens"] += sum(map(len, prompts))

    def _step(self, keep_slots: bool = False) -> list[tuple[_Request, Generation]]:
        """One token for every running row (on the model thread); returns the rows that finished.
        `keep_slots`: see `CausalLM.step`."""
        with self._idle:
            started = time.perf_counter()
            done = self.lm.step(self._running, keep_slots)
            self.stats["decode_s"] += time.perf_counter() - started
            if not self._running:
                self._idle.notify_all()  # a weight swap may be waiting for the batch to drain
            version = self.weights_version  # fixed while rows run: swaps wait for an empty batch
        self._steps += 1
        if not self._running or self._steps % TRIM_EVERY_STEPS == 0:
            release_free_memory()  # the finished rows' KV and the step's temporaries
        finished = [(r.key, replace(r.generation(self.tokenizer), weights_version=version)) for r in done]
        self.stats["completion_tokens"] += sum(g.completion_tokens for _, g in finished)
        return finished

    def set_threads(self, threads: int) -> None:
        """Run the model on `threads` torch threads from its next stage on (a stage under way keeps its
        count). OpenMP's count is per thread, so the model thread sets it itself, in its queue's order."""
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.torch_threads = threads
        self._model_thread.submit(torch.set_num_threads, threads)

    def _wait_for_swaps(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: not self._swaps_waiting)

    def generate_batch(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        """Decode a batch synchronously, on its own. prompts: token ids per row; one Generation per row."""
        with self._model_lock:
            torch.set_num_threads(self.torch_threads)
            started = time.perf_counter()
            results = [
                replace(g, weights_version=self.weights_version) for g in self.lm.decode(prompts, params)
            ]
            self.stats["decode_s"] += time.perf_counter() - started
        self.stats["prompt_tokens"] += sum(map(len, prompts))
        self.stats["completion_tokens"] += sum(g.completion_tokens for g in results)
        return results

    def score_batch(self, prompts: list[list[int]], tails: list[list[list[int]]]) -> list[list[float]]:
        with self._model_lock:
            torch.set_num_threads(self.torch_threads)
            started = time.perf_counter()
            results = self.lm.score(prompts, tails)
            self.stats["score_s"] += time.perf_counter() - started
        self.stats["score_batches"] += 1
        self.stats["prompt_tokens"] += sum(map(len, prompts))
        return results

    def load_weights(self, version: int, path: str | bytes) -> None:
        """Swap in published weights `version` from a safetensors file (or its bytes). Waits for the
        running batch to drain (no row joins it meanwhile), so every reply is produced entirely by one
        version (on its Generation). Call it from a thread other than the backend's event loop."""
        from esc.weights import load_into

        with self._idle:
            self._swaps_waiting += 1  # no row joins the running batch meanwhile, so it drains
            try:
                self._idle.wait_for(lambda: not self._running)
                # copying 0.5 GB on a caller's long-lived thread would slow every later decode step
                in_passing_thread(load_into, self.model, path, not isinstance(path, bytes))
                if self.lm.prefix_cache is not None:  # its entries were computed by the old weights
                    self.lm.prefix_cache.entries.clear()
                self.weights_version = version
            finally:
                self._swaps_waiting -= 1
                self._idle.notify_all()

    def report(self) -> dict[str, float]:
        """Counters since construction: tokens, seconds in decoding and scoring, batch sizes."""
        sizes = self.batch_sizes
        return {
            **{k: round(v, 2) for k, v in self.stats.items()},
            "decode_batches": len(sizes),
            "mean_decode_batch": round(sum(sizes) / len(sizes), 2) if sizes else 0.0,
            "prefix_reused_tokens": self.lm.prefix_cache.reused_tokens if self.lm.prefix_cache else 0,
        }

    def score_continuations(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Synchronous `continuation_logprobs` for one prompt."""
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        return self.score_batch([self.encode_prompt(messages)], [tails])[0]

    async def close(self) -> None:
        """Stop the batching task and the model thread (a stage under way finishes first, off the
        caller's path); a later request starts both again, the thread in a fresh pool. Called on the
        task's own event loop, it returns once the task has ended, so the task holds nothing more."""
        worker, loop, self._worker, self._loop = self._worker, self._loop, None, None
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self._model_thread = self._new_model_thread()
        if worker is not None:
            worker.cancel()
            if loop is asyncio.get_running_loop():  # it ends at its next await; a stage's thread runs on
                await asyncio.wait([worker])
