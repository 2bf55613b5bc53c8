"""The training sections of the run config (`esc.config` composes them into `RunConfig`): the
future-oriented reward model, the GRPO learner and the cold-start SFT.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from esc.config_placement import Placement
from esc.config_roles import Section


def _bf16_setting(value: object) -> object:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError(f"a bf16 setting is true, false or 'auto', not {value!r}")


# A bf16 autocast setting: on, off, or "auto": on where the device has bf16 instructions
# (`esc.models.use_bf16`; bf16 products took 6.2x the float32 time on a CPU without them)
Bf16 = Annotated[bool | Literal["auto"], BeforeValidator(_bf16_setting)]


class RewardModelConfig(Section):
    """The future-oriented reward model: a bounded scoring head on frozen transformer features."""

    backbone: str = Field("smollm2-135m", description="Model spec of the backbone (see esc/models.py).")
    labels: Literal["data", "simulated"] = Field(
        "data", description="data: ESConv future-oriented reply labels (needs `data`); simulated: store."
    )
    data: str | None = Field(
        None, description="esconv:PATH, for data-grounded labels (train split to train, valid to report)."
    )
    future_turns: int = Field(
        3, ge=1, le=20, description="k: seeker turns after a reply whose affect change labels the reply."
    )
    survey_weight: float = Field(
        0.0, ge=0.0, le=1.0, description="Weight of the dialogue's survey improvement blended into labels."
    )
    other_replies: int = Field(
        3, ge=0, le=20, description="Replies from other dialogues added to each context group as negatives."
    )
    max_contexts: int = Field(500, gt=0, description="Most training contexts (seeded choice).")
    valid_contexts: int = Field(250, gt=0, description="Most held-out contexts in the report (valid split).")
    hidden: int = Field(0, ge=0, le=4096, description="Width of the head's hidden layer; 0: a linear head.")
    label_weight: float = Field(
        1.0, ge=0.0, description="Weight of the label regression next to the ranking loss in training."
    )
    text_dims: int = Field(
        16, gt=0, le=4096, description="Principal components of the text embeddings the head reads."
    )
    epochs: int = Field(1000, gt=0, le=100_000, description="Full-batch passes of the head over the data.")
    lr: float = Field(3e-3, gt=0.0, lt=1.0, description="Learning rate of the head.")
    weight_decay: float = Field(0.1, ge=0.0, description="AdamW decoupled weight decay of the head.")
    max_tokens: int = Field(48, gt=8, le=8192, description="Tokens of each encoded text (the end is kept).")
    layers: int = Field(0, ge=0, description="Backbone layers run (the first n, for speed); 0: all of them.")
    bf16: Bf16 = Field(
        False,
        description="The backbone's forward passes under bf16 autocast, in training and scoring alike; its"
        " linear weights are then kept in bf16 (the same products, half their memory), the rest float32."
        " 'auto': on where the device has bf16 instructions (esc.models.use_bf16).",
    )
    likelihood_turns: int = Field(
        0,
        ge=0,
        le=20,
        description="Turns before a reply its likelihood-gain features read (3 ranks best); 0: none.",
    )
    weight: float = Field(1.0, ge=0.0, description="Weight of the RM score in the policy reward.")

    @model_validator(mode="after")
    def _likelihood_needs_every_layer(self) -> RewardModelConfig:
        if self.layers and self.likelihood_turns:
            raise ValueError(
                "reward_model.layers cuts the backbone that the likelihood features run through:"
                " set layers 0 or likelihood_turns 0"
            )
        return self


class RewardRefreshConfig(Section):
    """Online reward-model refresh in `rlff run` (`actors/rm_trainer.py`): a trainer beside the learner
    retrains the reward model's head on the simulated futures the rollout workers store and publishes
    reward-model versions, which the learner switches to between updates."""

    every: int = Field(
        0,
        ge=0,
        description="Retrain after every N new groups with simulated futures; 0: never (the reward"
        " model trained before the run scores every update).",
    )
    holdout: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Share of simulated groups (by a hash of the id) held out to check each refresh.",
    )
    data_weight: float = Field(
        0.0,
        ge=0.0,
        description="Weight of data-grounded examples (reward_model.data) in each refresh, next"
        " to weight 1 for simulated ones; 0: simulated labels only.",
    )
    data_contexts: int = Field(
        100, gt=0, description="ESConv training contexts mixed in when data_weight > 0 (seeded choice)."
    )


class LearnerConfig(Section):
    """The learner (reward model and GRPO policy updates)."""

    placement: Placement = Field(
        Placement(num_cpus=1.0), description="Ray Train workers (data-parallel replicas) and their resources."
    )
    strategy: Literal["ddp", "deepspeed"] = Field("ddp", description="ddp: gloo/nccl DDP; deepspeed: ZeRO.")
    lr: float = Field(1e-6, gt=0.0, lt=1.0, description="Policy learning rate.")
    batch_size: int = Field(4, gt=0, description="Candidate groups per policy update.")
    micro_batch: int = Field(4, gt=0, description="Rows per forward/backward pass; gradients accumulate.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    clip_eps: float = Field(0.2, gt=0.0, lt=1.0, description="PPO clip range of the importance ratio.")
    is_cap: float = Field(2.0, ge=1.0, description="Cap of the truncated behaviour importance weight.")
    kl_beta: float = Field(0.0, ge=0.0, description="Weight of the KL penalty to the frozen reference.")
    format_weight: float = Field(0.5, ge=0.0, description="Weight of the <think>/<answer> format reward.")
    format_gate: bool = Field(
        True, description="A malformed reply's RM part is the RM's floor, -1 (off for a plain counselor)."
    )
    safety_weight: float = Field(1.0, ge=0.0, description="Penalty for a reply the safety check flags.")
    novelty_weight: float = Field(
        0.0, ge=0.0, description="Training reward + this x the share of a reply's bigrams its group lacks."
    )
    redundancy_weight: float = Field(
        0.0,
        ge=0.0,
        description="Training reward - this x the number of a reply's bigrams another reply of its group"
        " has.",
    )
    overlong_start: int = Field(
        0,
        ge=0,
        description="Training reward - a penalty rising from 0 at this many sampled tokens to 1 at"
        " counselor.max_new_tokens (DAPO's soft overlong punishment); 0, or a budget at or below it, = off.",
    )
    lora_rank: int = Field(0, ge=0, description="LoRA rank (peft) of the policy; 0 trains every weight.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory in the policy update.")
    recompute_mlp: bool = Field(
        False,
        description="Recompute each layer's MLP in the update's backward pass instead of keeping its"
        " activations (learner.recompute): about half the activation memory for ~25% more update time;"
        " unlike gradient_checkpointing, a group's rows still share their prompt's forward pass.",
    )
    bf16: Bf16 = Field(
        False,
        description="The update's forward passes under bf16 autocast, on a CPU too (learner.bf16): frozen"
        " weights used as bf16 copies, the LM head and log-probs float32, published weights unchanged."
        " 'auto': on where the device has bf16 instructions.",
    )
    zero_stage: int = Field(
        2, ge=0, le=3, description="DeepSpeed ZeRO stage (strategy deepspeed; 0-2 publish)."
    )
    publish: Literal["filesystem", "object_store"] = Field(
        "filesystem",
        description="How new weights reach counselors: runs/<name>/weights, or Ray's object store.",
    )
    max_tokens: int = Field(384, gt=8, le=16384, description="Most prompt + completion tokens per sample.")
    checkpoint_every: int = Field(2, gt=0, description="Save learner state every K policy updates.")
    max_updates: int = Field(8, gt=0, description="Policy updates before the run stops.")
    mode: Literal["async", "sync"] = Field(
        "async", description="async: rollouts and updates overlap; sync: generate, then train, alternately."
    )
    sample_timeout_s: float = Field(600.0, gt=0.0, description="Longest wait for a batch from the store.")

    @model_validator(mode="after")
    def _one_kind_of_recompute(self) -> LearnerConfig:
        if self.recompute_mlp and self.gradient_checkpointing:
            raise ValueError(
                "learner.gradient_checkpointing already recomputes every layer, MLPs included:"
                " set recompute_mlp or gradient_checkpointing, not both"
            )
        return self

    @model_validator(mode="after")
    def _batch_splits_over_ranks(self) -> LearnerConfig:
        ranks = self.placement.replicas
        if self.batch_size % ranks:  # else the ranks take more or fewer groups than the gate admits
            raise ValueError(
                f"learner.batch_size {self.batch_size} must be a multiple of learner.placement.replicas"
                f" {ranks}: each learner rank trains on an equal share of every update's groups"
            )
        return self

    @property
    def use_gpu(self) -> bool:
        """Whether the learner's workers run on GPUs: `placement.num_gpus` > 0."""
        return self.placement.num_gpus > 0


class SFTConfig(Section):
    """The cold-start SFT: fine-tune the counselor on ESConv replies in its own format (jobs/train_sft.py)."""

    data: str | None = Field(None, description="esconv:PATH[#split] of dialogues to imitate (train split).")
    max_steps: int = Field(60, gt=0, description="Optimizer steps.")
    lr: float = Field(2e-5, gt=0.0, lt=1.0, description="Learning rate.")
    batch_size: int = Field(4, gt=0, description="Examples per step.")
    max_tokens: int = Field(384, gt=8, le=16384, description="Most prompt + reply tokens per example.")
    max_examples: int = Field(2000, gt=0, description="Most (context, reply) examples taken (seeded).")
    max_answer_tokens: int = Field(
        40, gt=0, le=4096, description="Longer replies keep their leading sentences within this many tokens."
    )
    lora_rank: int = Field(
        0, ge=0, le=1024, description="> 0: LoRA adapters of this rank, merged when saved; 0: every weight."
    )
    cold_start: bool = Field(
        False, description="`rlff run` starts the counselor from runs/<name>/sft (`rlff train --stage sft`)."
    )
    bf16: Bf16 = Field(
        False,
        description="bf16 autocast on CPU too (float32 weights and optimizer state); CUDA always autocasts."
        " 'auto': on a CPU with bf16 instructions only.",
    )


class SeekerSFTConfig(SFTConfig):
    """The seeker simulator's SFT: fine-tune the seeker model on ESConv seekers' turns, each behind the
    simulator's own prompt (jobs/train_sft.py, `rlff train --stage seeker`), so it talks as a help-seeker."""

    cold_start: bool = Field(
        False,
        description="`rlff run` starts the seeker from runs/<name>/seeker_sft (`rlff train --stage seeker`).",
    )
