"""MetricsHub actor: the one place metric events go; it appends them to runs/<name>/metrics.jsonl.

Every line is a JSON object `{"time": unix seconds, "source": who sent it, <metric>: value, ...}`;
the same events go to TensorBoard and Prometheus when asked (`actors/metric_sinks.py`).
Metric names and units are defined once, in `METRICS` below; `record` refuses names not listed there,
so a typo cannot silently start a new series. It knows nothing of Ray, models or the store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

from actors.metric_sinks import PrometheusSink, TensorBoardSink


class Metric(NamedTuple):
    """One metric: its unit, what it means, and what a healthy value looks like."""

    unit: str
    meaning: str
    good: str


# Every metric a run records, by the component that sends it; docs/metrics.md is generated from this.
METRICS: dict[str, Metric] = {
    # rollout workers (source worker-<i>), one event per candidate group
    "stage_generate_s": Metric(
        "s", "time a worker spent getting the G candidate replies of one group", "falls as batches fill"
    ),
    "stage_future_s": Metric(
        "s",
        "time a worker spent on future simulation and judging for one group",
        "0 when rollout.future_fraction is 0",
    ),
    "stage_put_s": Metric(
        "s",
        "time a worker waited for the store to accept one group (backpressure shows here)",
        "near 0; long waits mean the learner is the bottleneck",
    ),
    "group_tokens": Metric(
        "tokens",
        "counselor tokens generated for one group's candidates",
        "G x counselor.max_new_tokens at most",
    ),
    "group_reward_mean": Metric(
        "reward", "mean future reward of one group's simulated candidates, in [-1, 1]", "rising over a run"
    ),
    "judge_verdicts": Metric(
        "candidates",
        "judge verdicts of one group's simulated candidates, a map; 'none': no judge sample named one"
        " (the candidate then has no label)",
        "more better/solved over a run",
    ),
    "admission_wait_s": Metric(
        "s",
        "time a worker waited for the staleness gate before starting one group",
        "short; long waits mean the learner is the bottleneck",
    ),
    # the driver (source driver), every few seconds
    "tokens_per_s": Metric(
        "tokens/s",
        "counselor tokens the rollout workers got per second, over the run so far",
        "steady or rising; bench/batched_inference.py measures the ceiling",
    ),
    "role_tokens_per_s": Metric(
        "tokens/s",
        "tokens each role actor processed (prompt + generated) per second since it started, a map (not"
        " the seeker and judge an evaluation starts for itself)",
        "steady; a drop to 0 means a stuck actor",
    ),
    "role_tokens": Metric(
        "tokens",
        "tokens each role actor processed (prompt + generated) since it started, a map; on an endpoint,"
        " what the server counted (its `usage`), which is what a paid API bills",
        "rising while the run works",
    ),
    "store_size": Metric(
        "records", "records in the replay store", "grows, bounded by store.capacity unconsumed"
    ),
    "store_unconsumed": Metric(
        "records",
        "records no learner has sampled yet (bounded by store.capacity)",
        "small: about learner.batch_size x (max_staleness + 1)",
    ),
    "queue_depth": Metric(
        "contexts",
        "contexts handed to workers and not yet finished (collect)",
        "0 at the end of a collection",
    ),
    "actor_restarts": Metric(
        "count", "actor restarts the driver has seen in this run", "0; each restart is logged"
    ),
    "actors_down": Metric("count", "actors that did not answer the driver's last health probe", "0"),
    # periodic evaluations (source evaluate), evaluation.every versions apart
    "sr": Metric(
        "share",
        "success rate of a periodic evaluation (PPDPP: mean judge reward > threshold)",
        "rising; read docs/judges.md first",
    ),
    "at": Metric(
        "turns", "average turns of a periodic evaluation (failures count as evaluation.max_turns)", "falling"
    ),
    "eval_last_version": Metric(
        "version",
        "newest policy version that wrote a reply in a periodic evaluation (credited to weights_version,"
        " the one at its start)",
        "equal to weights_version; above it when the learner published during the evaluation",
    ),
    "eval_format_rate": Metric(
        "share",
        "share of a periodic evaluation's counselor turns in <think>/<answer> form",
        "rising towards 1",
    ),
    # held-out learning report (source heldout, jobs/heldout.py): one event per evaluation point, each
    # metric with the 2.5/97.5 percentiles of its bootstrap over contexts (heldout_<metric>_lo/_hi)
    **{
        f"heldout_{name}{suffix}": Metric(unit, f"{meaning}{bound}", good)
        for name, unit, meaning, good in (
            (
                "format_rate",
                "share",
                "held-out replies in exact <think>R</think><answer>A</answer> form",
                "rising towards 1",
            ),
            ("reward", "reward", "held-out GRPO reward: RM score + format reward - safety penalty", "rising"),
            ("rm_score", "reward", "held-out reward-model score of the answers", "rising"),
            ("format_reward", "reward", "held-out graded format reward, in [0, 1]", "rising towards 1"),
            (
                "answer_tokens",
                "tokens",
                "held-out answer length in counselor tokens",
                "steady, not collapsing",
            ),
            (
                "distinct2",
                "share",
                "held-out Distinct-2 of each context's G answers, mean over contexts",
                "not below version 0's",
            ),
            ("rouge_l", "F1 x 100", "held-out ROUGE-L F1 of each answer against the real reply", "rising"),
        )
        for suffix, bound in (
            ("", " (mean over contexts)"),
            ("_lo", ": lower bound of the 95% bootstrap CI"),
            ("_hi", ": upper bound of the 95% bootstrap CI"),
        )
    },
    # the learner (source learner), one event per policy update
    "weights_version": Metric(
        "version",
        "policy weights version the learner has published (sources heldout and evaluate: the version"
        " a point measured)",
        "+1 per update",
    ),
    "groups_used": Metric(
        "groups",
        "candidate groups one update learned from (groups need 2+ sampled replies)",
        "learner.batch_size",
    ),
    "reward_mean": Metric(
        "reward",
        "mean GRPO reward of one update's candidates: RM score + format - safety (+ training-only terms)",
        "rising",
    ),
    "rm_score_mean": Metric(
        "reward", "mean reward-model score of one update's candidates, in [-1, 1]", "rising"
    ),
    "format_rate": Metric(
        "share", "share of one update's candidates in well-formed <think>/<answer> format", "rising towards 1"
    ),
    "unsafe_rate": Metric("share", "share of one update's candidates the safety check flagged", "0"),
    "novelty_mean": Metric(
        "share", "mean share of a candidate's bigrams no other candidate of its group has", "near 1"
    ),
    "redundancy_mean": Metric(
        "bigrams",
        "mean number of a candidate's bigrams another candidate of its group also has",
        "low, not rising",
    ),
    "overlong_mean": Metric(
        "penalty",
        "mean soft overlong penalty of one update's candidates (learner.overlong_start; 0 when off)",
        "near 0",
    ),
    "policy_loss": Metric(
        "loss", "clipped policy-gradient loss of one update (token mean)", "near 0, either sign"
    ),
    "clip_fraction": Metric("share", "share of completion tokens where the PPO clip was active", "below 0.2"),
    "is_weight_mean": Metric(
        "ratio", "mean truncated importance weight current/behaviour policy (1 = on-policy)", "0.9 to 1.1"
    ),
    "is_truncated_fraction": Metric(
        "share", "share of completion tokens whose importance weight hit learner.is_cap", "below 0.05"
    ),
    "kl": Metric(
        "nats",
        "k3 estimate of KL(policy || reference) per token (only when learner.kl_beta > 0)",
        "small and slowly rising",
    ),
    "policy_kl": Metric(
        "nats",
        "k3 estimate of KL(behaviour policy || policy before the step) per token",
        "below 0.05; large means stale or unstable",
    ),
    "grad_norm": Metric(
        "norm",
        "policy gradient norm before clipping (NaN: not finite, and the step was skipped)",
        "stable; spikes mean too high a learning rate; NaN means a non-finite reward or loss",
    ),
    "completion_tokens": Metric(
        "tokens", "completion tokens one update learned from", "about batch x G x mean reply length"
    ),
    "stage_sample_s": Metric(
        "s",
        "learner stage: waiting for and reading groups from the store",
        "short; long means rollouts are the bottleneck",
    ),
    "stage_score_s": Metric(
        "s", "learner stage: reward-model, format and safety scoring", "a small share of an update"
    ),
    "stage_advantages_s": Metric("s", "learner stage: group-relative advantages", "milliseconds"),
    "stage_update_s": Metric("s", "learner stage: forward, backward and optimizer step", "the largest stage"),
    "stage_publish_s": Metric(
        "s",
        "learner stage: writing weights and waiting for the counselors to load them",
        "about 1 s for 135M",
    ),
    **{
        f"stage_{stage}_peak_gb": Metric(
            "GB",
            f"learner stage {stage}: the learner process's peak resident size during it (Linux only)",
            "flat from update to update; a rise that does not stop is a leak",
        )
        for stage in ("sample", "score", "advantages", "update", "publish")
    },
    "rm_version": Metric(
        "version",
        "reward-model version that scored one update's candidates (source rm_trainer: the version a"
        " refresh published); 0 is the model trained before the run",
        "rises every reward_refresh.every simulated groups when refreshing, else 0",
    ),
    "rm_switch_s": Metric(
        "s",
        "learner: time to look for and load a newer reward-model version before an update",
        "milliseconds",
    ),
    # the online reward-model trainer (source rm_trainer, reward_refresh.every > 0), one event per refresh
    "rm_heldout_accuracy": Metric(
        "share",
        "refreshed reward model's ranking accuracy on held-out simulated groups (pairs by judge reward)",
        "above 0.5 and steady or rising",
    ),
    "rm_judge_gap": Metric(
        "reward",
        "newest reward model's mean score minus the judge's future reward on groups it had not seen",
        "near 0; a steady rise means the policy games the reward model (over-optimisation)",
    ),
    "rm_train_groups": Metric("groups", "simulated groups a refresh trained on", "growing with the run"),
    "rm_refresh_s": Metric(
        "s", "time one reward-model refresh took (scoring, training, checking, publishing)", "seconds"
    ),
    "staleness_hist": Metric(
        "groups",
        "sampled groups per staleness (learner version - policy_version), a map",
        "keys 0 to rollout.max_staleness only",
    ),
}


class MetricsHub:
    def __init__(self, path: str | Path, tensorboard: bool = False, prometheus: bool = False):
        """`path`: the metrics.jsonl file; dialogues.jsonl (the dashboard's live feed) sits beside it,
        and with `tensorboard` the event files go to tensorboard/ there. `prometheus` sets Ray gauges
        (only inside a Ray process)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # line-buffered, open for the actor's life: every event reaches the file when record() returns
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115
        self._dialogues = open(self.path.with_name("dialogues.jsonl"), "a", buffering=1)  # noqa: SIM115
        self.latest: dict[str, dict[str, Any]] = {}
        self.sinks: list[Any] = []
        if tensorboard:
            self.sinks.append(TensorBoardSink(self.path.with_name("tensorboard")))
        if prometheus:
            self.sinks.append(PrometheusSink(METRICS))

    def record(self, source: str, metrics: dict[str, Any]) -> None:
        """Append one event; every key must be a name in METRICS."""
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise ValueError(
                f"unknown metric name(s) {unknown}; add them to METRICS in actors/metrics_hub.py"
            )
        now = time.time()
        self._file.write(json.dumps({"time": now, "source": source, **metrics}) + "\n")
        self.latest[source] = {**self.latest.get(source, {}), **metrics}
        for sink in self.sinks:
            sink.write(source, metrics, now)

    def dialogue(self, source: str, record: dict[str, Any]) -> None:
        """Append one simulated dialogue (a rollout group or an evaluation episode) to the live feed:
        `{"time", "source", "kind", ...}` as `DialogueFeed` in serve/dashboard.py reads it."""
        self._dialogues.write(json.dumps({"time": time.time(), "source": source, **record}) + "\n")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The most recent value of every metric, per source."""
        return self.latest

    def close(self) -> None:
        self._file.close()
        self._dialogues.close()
        for sink in self.sinks:
            sink.close()
