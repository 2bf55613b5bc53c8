"""The LLM roles' sections of the run config (`esc.config` composes them into `RunConfig`): which
model answers each role, on which backend, with which sampling settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


BackendKind = Literal["hf", "openai", "vllm"]


class RoleConfig(Section):
    """An LLM role: which model answers, on which backend, with which sampling settings."""

    backend: BackendKind = Field("hf", description="Inference backend: hf, openai or vllm.")
    model: str = Field(
        "smollm2-135m",
        description="Model spec: 'smollm2-135m' (embedded), 'tiny-random', a HF model id or a local folder.",
    )
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (backend openai only).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="Where the hf backend runs.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="hf weights dtype.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(96, gt=0, le=4096, description="Generation budget per reply, in tokens.")
    max_batch_size: int = Field(8, gt=0, le=512, description="Most rows the backend decodes together.")
    max_wait_ms: float = Field(
        15.0, ge=0.0, le=1000.0, description="How long an idle backend waits for company to start a batch."
    )
    prefix_cache_tokens: int = Field(
        4096, ge=0, description="Prompt-prefix KV the hf backend keeps for reuse, in tokens; 0 turns it off."
    )
    timeout_s: float = Field(120.0, gt=0.0, description="Per-request timeout (openai backend).")
    max_retries: int = Field(3, ge=0, le=10, description="Retries with backoff on transient errors (openai).")
    max_concurrent: int = Field(
        8, ge=1, le=256, description="Most requests in flight to the endpoint at once (openai backend)."
    )

    @model_validator(mode="after")
    def _openai_needs_url(self) -> RoleConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url, e.g. http://127.0.0.1:8001/v1")
        return self


class SeekerConfig(RoleConfig):
    """The user simulator that role-plays the help-seeker."""

    max_new_tokens: int = Field(40, gt=0, le=4096, description="Seeker replies are 1-2 sentences.")
    examples: str | None = Field(
        None,
        description="Data spec whose real seeker turns ground the simulator, e.g. 'esconv:PATH#train': "
        "style examples in the prompt, and the role checker that resamples out-of-role turns; "
        "None: prompt only.",
    )
    num_examples: int = Field(4, ge=0, le=16, description="Real seeker turns shown as style examples.")
    openers: bool = Field(
        True, description="Start each turn with a common two-word opening of real seeker turns ('I feel')."
    )
    max_resamples: int = Field(
        2, ge=0, le=8, description="Extra tries when the role checker reads a turn as a counselor's."
    )
    max_history_turns: int = Field(
        0, ge=0, le=1000, description="Last turns of the dialogue in the prompt (prefill cost); 0: all."
    )


class CounselorConfig(RoleConfig):
    """The counselor policy."""

    reasoning: bool = Field(True, description="Reply as <think>..</think><answer>..</answer>; false = plain.")
    max_new_tokens: int = Field(96, gt=0, le=4096, description="Budget for reasoning plus answer.")
    max_history_turns: int = Field(
        0, ge=0, le=1000, description="Last turns of the dialogue in the prompt (prefill cost); 0: all."
    )


class SystemAgentConfig(CounselorConfig):
    """The counselor that continues conversations during future simulation (plain replies)."""

    reasoning: bool = Field(False, description="Plain replies; the simulated future needs no reasoning.")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Budget per simulated counselor reply.")


class JudgeConfig(RoleConfig):
    """The judge that rates the seeker's state after a counselor turn (PPDPP verdicts)."""

    scorer: Literal["likelihood", "sample"] = Field(
        "likelihood", description="likelihood: expected reward under label probabilities; sample: parse N."
    )
    num_samples: int = Field(10, gt=0, le=64, description="Samples averaged by the 'sample' scorer.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="Temperature of the 'sample' scorer.")
    max_new_tokens: int = Field(8, gt=0, le=256, description="A verdict is one word.")
