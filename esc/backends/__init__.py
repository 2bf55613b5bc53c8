"""Inference backends: one protocol (`InferenceBackend`), three implementations (hf, openai, vllm)."""

from esc.backends.base import (
    BackendError,
    Generation,
    InferenceBackend,
    Message,
    PromptTooLong,
    SamplingParams,
)

__all__ = [
    "BackendError",
    "BackendPool",
    "Generation",
    "InferenceBackend",
    "Message",
    "PromptTooLong",
    "SamplingParams",
    "make_backend",
]


def make_backend(role_config, seed: int = 0) -> InferenceBackend:
    """Build the backend a role config asks for. Heavy imports happen only for the chosen kind."""
    if role_config.backend == "hf":
        from esc.backends.hf import HFBackend

        return HFBackend.from_config(role_config, seed=seed)
    if role_config.backend == "openai":
        from esc.backends.openai import OpenAIBackend

        return OpenAIBackend.from_config(role_config)
    from esc.backends.vllm import VLLMBackend

    return VLLMBackend.from_config(role_config, seed=seed)


class BackendPool:
    """Shares one backend between roles that ask for the same model on the same backend.

    On one machine the embedded default runs seeker, counselor and judge on SmolLM2: one copy in
    memory, and requests from all three roles batch together. Batch settings come from the first
    role that asked.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._backends: dict[tuple, InferenceBackend] = {}

    def get(self, role_config) -> InferenceBackend:
        c = role_config
        key = (c.backend, c.model, c.base_url, c.device, c.dtype)
        if key not in self._backends:
            self._backends[key] = make_backend(role_config, seed=self.seed)
        return self._backends[key]

    def report(self) -> dict[str, dict]:
        """Per-backend counters (backends that keep them), keyed 'kind:model'."""
        return {f"{k[0]}:{k[1]}": b.report() for k, b in self._backends.items() if hasattr(b, "report")}

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
        self._backends.clear()
