"""Where a part of the system runs: one `Placement` model for every actor role, the learner's Ray Train
workers and the endpoint's Serve replicas.

Ray reads `replicas`, `num_cpus`, `num_gpus` and `resources` when it places each copy (the launcher for
actors, `TorchTrainer`'s scaling config for the learner, the deployment's options for the endpoint);
the process itself applies `torch_threads` and `nice` when it starts (`esc.placement.apply`).
"""

from __future__ import annotations

from pydantic import Field

from esc.config_roles import Section


class Placement(Section):
    """How many copies of one part run, what Ray reserves for each, and how each uses its CPU."""

    replicas: int = Field(1, gt=0, le=256, description="Copies; requests or data spread over them.")
    num_cpus: float = Field(
        0.0, ge=0.0, description="CPUs Ray reserves per copy; 0 lets parts share a small machine."
    )
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs Ray reserves per copy.")
    resources: dict[str, float] = Field(
        {}, description="Custom node resources per copy (Ray resources=), e.g. {policy_gpu: 1}."
    )
    torch_threads: int | None = Field(
        None, gt=0, description="torch threads per copy; None: actors one per reserved CPU, others all."
    )
    nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Added to each copy's niceness: CPU the learner's critical path needs comes first.",
    )
