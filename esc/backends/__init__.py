"""Inference backends: one protocol (`InferenceBackend`), three implementations (hf, openai, vllm)."""

from esc.backends.base import BackendError, Generation, InferenceBackend, Message, SamplingParams

__all__ = ["BackendError", "Generation", "InferenceBackend", "Message", "SamplingParams", "make_backend"]


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
