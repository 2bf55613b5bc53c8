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
