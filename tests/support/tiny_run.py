"""The `--set` arguments of a small `rlff run` that tests start in a subprocess."""

from __future__ import annotations

from pathlib import Path


def tiny_run(runs: Path, name: str, *extra: str) -> list[str]:
    """Tiny random models, 8-token plain replies, G = 2, two groups per update, learner workers on a
    quarter CPU each; no endpoint, no periodic evaluation, no cold start. `extra` settings come last,
    so they win over these."""
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += ["counselor.max_new_tokens=8", "counselor.reasoning=false", "rollout.group_size=2"]
    sets += [
        "rollout.in_flight=2",
        "learner.batch_size=2",
        "learner.lr=1e-3",
        "reward_model.backbone=tiny-random",
    ]
    sets += ["learner.placement.num_cpus=0.25", f"runs_dir={runs}", f"name={name}", "serve.enabled=false"]
    sets += ["evaluation.every=0", "sft.cold_start=false", "seeker_sft.cold_start=false", *extra]
    return [arg for s in sets for arg in ("--set", s)]
