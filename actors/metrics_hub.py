"""MetricsHub actor: the one place metric events go; it appends them to runs/<name>/metrics.jsonl.

Every line is a JSON object `{"time": unix seconds, "source": who sent it, <metric>: value, ...}`.
Metric names and units are defined once, in `METRICS` below; `record` refuses names not listed there,
so a typo cannot silently start a new series. It knows nothing of Ray, models or the store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

METRICS: dict[str, tuple[str, str]] = {
    # name: (unit, meaning)
    "stage_generate_s": ("s", "time a worker spent getting the G candidate replies of one group"),
    "stage_future_s": ("s", "time a worker spent on future simulation and judging for one group"),
    "stage_put_s": ("s", "time a worker waited for the store to accept one group (backpressure shows here)"),
    "group_tokens": ("tokens", "counselor tokens generated for one group's candidates"),
    "group_reward_mean": ("reward", "mean future reward of one group's simulated candidates, in [-1, 1]"),
    "tokens_per_s": ("tokens/s", "counselor tokens per second over the run so far"),
    "store_size": ("records", "records in the replay store"),
    "store_unconsumed": ("records", "records no learner has sampled yet (bounded by store.capacity)"),
    "queue_depth": ("contexts", "contexts handed to workers and not yet finished"),
    "actor_restarts": ("count", "actor restarts the driver has seen in this run"),
    "admission_wait_s": ("s", "time a worker waited for the staleness gate before starting one group"),
    "weights_version": ("version", "policy weights version the learner has published"),
    "groups_used": ("groups", "candidate groups one update learned from (groups need 2+ sampled replies)"),
    "reward_mean": ("reward", "mean GRPO reward of one update's candidates: RM score + format - safety"),
    "rm_score_mean": ("reward", "mean reward-model score of one update's candidates, in [-1, 1]"),
    "format_rate": ("share", "share of one update's candidates in well-formed <think>/<answer> format"),
    "unsafe_rate": ("share", "share of one update's candidates the safety check flagged"),
    "policy_loss": ("loss", "clipped policy-gradient loss of one update (token mean)"),
    "clip_fraction": ("share", "share of completion tokens where the PPO clip was active"),
    "is_weight_mean": ("ratio", "mean truncated importance weight current/behaviour policy (1 = on-policy)"),
    "is_truncated_fraction": (
        "share",
        "share of completion tokens whose importance weight hit learner.is_cap",
    ),
    "kl": ("nats", "k3 estimate of KL(policy || reference) per token (only when learner.kl_beta > 0)"),
    "grad_norm": ("norm", "policy gradient norm before clipping"),
    "completion_tokens": ("tokens", "completion tokens one update learned from"),
    "stage_sample_s": ("s", "learner stage: waiting for and reading groups from the store"),
    "stage_score_s": ("s", "learner stage: reward-model, format and safety scoring"),
    "stage_advantages_s": ("s", "learner stage: group-relative advantages"),
    "stage_update_s": ("s", "learner stage: forward, backward and optimizer step"),
    "stage_publish_s": ("s", "learner stage: writing weights and waiting for the counselors to load them"),
    "staleness_hist": ("groups", "sampled groups per staleness (learner version - policy_version), a map"),
}


class MetricsHub:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # line-buffered, open for the actor's life: every event reaches the file when record() returns
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115
        self.latest: dict[str, dict[str, Any]] = {}

    def record(self, source: str, metrics: dict[str, float]) -> None:
        """Append one event; every key must be a name in METRICS."""
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ValueError(
                f"unknown metric name(s) {unknown}; add them to METRICS in actors/metrics_hub.py"
            )
        self._file.write(json.dumps({"time": time.time(), "source": source, **metrics}) + "\n")
        self.latest[source] = {**self.latest.get(source, {}), **metrics}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The most recent value of every metric, per source."""
        return self.latest

    def close(self) -> None:
        self._file.close()
