"""Where metric events go besides metrics.jsonl: TensorBoard event files and Ray's Prometheus metrics.

Both take the events the MetricsHub accepted (names from `METRICS`). Numbers become one scalar each;
maps (`staleness_hist`, `judge_verdicts`, `role_tokens_per_s`) become one scalar per key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def scalars(metrics: dict[str, Any]) -> Iterator[tuple[str, str, float]]:
    """(name, key, value) for every number in an event; key is '' for plain numbers."""
    for name, value in metrics.items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            yield name, "", float(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    yield name, str(key), float(item)


class TensorBoardSink:
    """Scalars tagged `<metric>/<source>[/<key>]`; the step counts that tag's events (for the learner,
    whose events come one per update, the step is the update number)."""

    def __init__(self, folder: str | Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(folder), flush_secs=2)
        self.steps: Counter = Counter()

    def write(self, source: str, metrics: dict[str, Any], walltime: float) -> None:
        for name, key, value in scalars(metrics):
            tag = "/".join(p for p in (name, source, key) if p)
            self.steps[tag] += 1
            self.writer.add_scalar(tag, value, self.steps[tag], walltime=walltime)

    def close(self) -> None:
        self.writer.close()


class PrometheusSink:
    """Ray gauges `rlff_<metric>` tagged with source and key; Ray's metrics agent serves them to
    Prometheus (each node's metrics export port, see docs/serving.md)."""

    def __init__(self, meanings: dict[str, Any]):
        """`meanings`: METRICS, whose entries have a `unit` and a `meaning`."""
        self.meanings = meanings
        self.gauges: dict[str, Any] = {}

    def write(self, source: str, metrics: dict[str, Any], walltime: float) -> None:
        from ray.util.metrics import Gauge

        for name, key, value in scalars(metrics):
            if name not in self.gauges:
                info = self.meanings[name]
                description = f"{info.meaning} ({info.unit})"
                self.gauges[name] = Gauge(f"rlff_{name}", description=description, tag_keys=("source", "key"))
            self.gauges[name].set(value, tags={"source": source, "key": key})

    def close(self) -> None:
        pass
