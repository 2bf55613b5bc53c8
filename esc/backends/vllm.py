"""vLLM backend: an `AsyncLLMEngine` (continuous batching on a CUDA GPU) behind the InferenceBackend protocol.

Owns prompt rendering (the model's chat template, plus `SamplingParams.prefill`) and the mapping to and
from vLLM's request and output types. The engine batches whatever requests are in flight, so callers
simply await `generate` concurrently. vLLM is an optional dependency (the `gpu` extra): it is
imported only when a VLLMBackend is built or used, and its absence is a BackendError, not an
ImportError. Not known here: prompts, roles, or where the weights came from beyond a folder or hub id.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from pathlib import Path
from typing import Any

from esc.backends.base import BackendError, Generation, Message, SamplingParams
from esc.models import EMBEDDED, TINY, ensure_embedded_cached


def _vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise BackendError(
            'backend vllm needs the gpu extra: pip install "rlff-esc[gpu]" on a CUDA machine'
        ) from None
    return vllm


class VLLMBackend:
    """A vLLM AsyncLLMEngine behind the InferenceBackend protocol."""

    name = "vllm"
    supports_logprobs = True

    def __init__(self, engine: Any, tokenizer: Any = None):
        """engine: a started vllm.AsyncLLMEngine; tokenizer: defaults to the engine's own."""
        self.engine = engine
        self._tokenizer = tokenizer

    @classmethod
    def from_config(cls, role_config: Any, seed: int = 0, **engine_kwargs: Any) -> VLLMBackend:
        """Start an engine for `role_config.model`. engine_kwargs go to vllm.AsyncEngineArgs as they are
        (e.g. gpu_memory_utilization, max_model_len, enforce_eager)."""
        vllm = _vllm()
        if role_config.model == TINY:
            raise BackendError(
                "model 'tiny-random' exists only in-process and vLLM loads weights from disk; use backend hf"
            )
        model = str(ensure_embedded_cached()) if role_config.model == EMBEDDED else role_config.model
        if model.startswith(("~", ".", "/")):
            model = str(Path(model).expanduser())
        args = vllm.AsyncEngineArgs(
            model=model,
            dtype=role_config.dtype,
            seed=seed,
            max_num_seqs=role_config.max_batch_size,
            **engine_kwargs,
        )
        return cls(vllm.AsyncLLMEngine.from_engine_args(args))

    async def tokenizer(self) -> Any:
        if self._tokenizer is None:
            tokenizer = self.engine.get_tokenizer()
            if inspect.isawaitable(tokenizer):  # a coroutine before vLLM 0.11, a plain call since
                tokenizer = await tokenizer
            self._tokenizer = tokenizer
        return self._tokenizer

    async def encode_prompt(self, messages: list[Message], prefill: str = "") -> list[int]:
        """Token ids of the chat-templated conversation, opened for the assistant, plus `prefill`."""
        tokenizer = await self.tokenizer()
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer.encode(text + prefill, add_special_tokens=False))

    async def _final_output(self, prompt_ids: list[int], params: Any) -> Any:
        """Submit one request under a unique id and return its final RequestOutput."""
        final = None
        try:
            async for output in self.engine.generate(
                {"prompt_token_ids": prompt_ids}, params, f"esc-{uuid.uuid4().hex}"
            ):
                final = output
        except ValueError as error:  # vLLM's request validation, e.g. a prompt over max_model_len
            raise BackendError(f"vLLM rejected the request: {str(error).splitlines()[0]}") from None
        if final is None:
            raise BackendError("the vLLM engine finished a request without producing any output")
        return final

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        vllm = _vllm()
        prompt_ids = await self.encode_prompt(messages, params.prefill)
        sampling = vllm.SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
        )
        output = (await self._final_output(prompt_ids, sampling)).outputs[0]
        stop = output.stop_reason if isinstance(output.stop_reason, str) else None
        finish = "length" if output.finish_reason == "length" else "stop"
        return Generation(params.prefill + output.text, len(prompt_ids), len(output.token_ids), finish, stop)

    async def continuation_logprobs(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Summed log p(continuation | messages, assistant start), from vLLM's prompt log-probs: each
        continuation is appended to the prompt and scored in a prefill-only request (max_tokens=1)."""
        vllm = _vllm()
        prompt = await self.encode_prompt(messages)
        tokenizer = await self.tokenizer()
        tails = [list(tokenizer.encode(c, add_special_tokens=False)) for c in continuations]
        if any(not tail for tail in tails):
            raise BackendError("every continuation must be non-empty text")
        # prompt_logprobs=1 returns, per prompt position, the actual token's log-prob (plus the top-1).
        sampling = vllm.SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
        outputs = await asyncio.gather(*(self._final_output(prompt + tail, sampling) for tail in tails))
        scores = []
        for output, tail in zip(outputs, tails, strict=True):
            # prompt_logprobs[p] is log p(token p | tokens before p); entry 0 is None.
            logprobs = output.prompt_logprobs
            scores.append(
                float(sum(logprobs[len(prompt) + i][token].logprob for i, token in enumerate(tail)))
            )
        return scores

    async def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)  # the V1 engine owns a background process
        if shutdown is not None:
            shutdown()
