"""The held-out learning report: per-context results -> per-point estimates -> base vs final table.

Pure functions over plain values (no models, no Ray, no files). A *sample* is one scored reply to a
held-out context; a *context row* averages a context's G samples; every estimate is a percentile
bootstrap over contexts (`esc.stats`), so the G samples of one context count as one unit. `jobs/heldout.py`
produces the samples during `rlff run`; `jobs/report.py` reads the rows back for `docs/results.md`.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from esc.metrics import distinct_n
from esc.stats import Estimate, mean_ci, paired_difference_ci

# metric -> (what it is, format); the hub records each as heldout_<metric> with _lo/_hi bounds
METRIC_KEYS: dict[str, tuple[str, str]] = {
    "format_rate": ("share of replies exactly <think>R</think><answer>A</answer>", ".3f"),
    "reward": ("GRPO reward (RM score + format reward - safety penalty, as the learner's)", ".3f"),
    "rm_score": ("reward-model score of the answer", ".3f"),
    "format_reward": ("graded format reward in [0, 1]", ".3f"),
    "answer_tokens": ("answer length in counselor tokens", ".1f"),
    "distinct2": ("Distinct-2 of a context's G answers (distinct bigrams / bigrams)", ".3f"),
    "rouge_l": ("ROUGE-L F1 (0-100) of each answer against the real reply", ".2f"),
}
SAMPLE_KEYS = ("well_formed", "reward", "rm_score", "format_reward", "answer_tokens", "rouge_l")


def context_row(context_id: str, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One held-out context's result: the mean of each metric over its samples, plus its samples.

    `samples`: one dict per sampled reply with `answer` (text), `version` (weights that wrote it) and
    every key of SAMPLE_KEYS (`well_formed` as a bool). Raises ValueError without samples.
    """
    if not samples:
        raise ValueError(f"held-out context {context_id} has no samples")
    missing = sorted({k for s in samples for k in (*SAMPLE_KEYS, "answer", "version") if k not in s})
    if missing:
        raise ValueError(f"held-out samples of {context_id} lack {missing}")
    row: dict[str, Any] = {"id": context_id, "versions": sorted({int(s["version"]) for s in samples})}
    row["format_rate"] = fmean(float(s["well_formed"]) for s in samples)
    for key in SAMPLE_KEYS[1:]:
        row[key] = fmean(float(s[key]) for s in samples)
    row["distinct2"] = distinct_n([s["answer"] for s in samples], 2)
    row["samples"] = list(samples)
    return row


def point_estimates(rows: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Estimate]:
    """Each metric of METRIC_KEYS over one evaluation point's context rows, with its bootstrap CI."""
    if not rows:
        raise ValueError("a held-out point needs at least one context row")
    return {key: mean_ci([r[key] for r in rows], seed=seed) for key in METRIC_KEYS}


def pooled_distinct2(rows: Sequence[dict[str, Any]]) -> float:
    """Distinct-2 over every answer of a point at once (no CI: a bootstrap that repeats contexts
    repeats their bigrams, which biases a distinct ratio; the per-context mean carries the CI)."""
    return distinct_n([s["answer"] for r in rows for s in r["samples"]], 2)


def hub_metrics(estimates: dict[str, Estimate], version: int) -> dict[str, float | int]:
    """The metrics-hub event of one point: heldout_<metric>, heldout_<metric>_lo/_hi, weights_version,
    and rm_version 0: held-out points always score with the reward model trained before the run, so
    points of a run that refreshes its reward model online still compare."""
    event: dict[str, float | int] = {"weights_version": version, "rm_version": 0}
    for key, est in estimates.items():
        event[f"heldout_{key}"] = est.value
        event[f"heldout_{key}_lo"] = est.lo
        event[f"heldout_{key}_hi"] = est.hi
    return event


def point_version(rows: Sequence[dict[str, Any]]) -> tuple[int, bool]:
    """The weights version a point measured (the one that wrote most samples) and whether every
    sample came from it (False when a new version was published while the point was generating)."""
    counts: dict[int, int] = {}
    for row in rows:
        for sample in row["samples"]:
            counts[int(sample["version"])] = counts.get(int(sample["version"]), 0) + 1
    if not counts:
        raise ValueError("a held-out point needs at least one sample")
    version = max(counts, key=lambda v: (counts[v], -v))
    return version, len(counts) == 1


def learning_report(
    base: Sequence[dict[str, Any]], final: Sequence[dict[str, Any]], seed: int = 0
) -> dict[str, Any]:
    """Base vs final on the same contexts: per metric {base, final, diff}, each {value, lo, hi, n};
    diff is final - base with a paired bootstrap CI over contexts. Raises ValueError when the two
    points did not answer the same contexts."""
    if [r["id"] for r in base] != [r["id"] for r in final]:
        raise ValueError("the base and final held-out points must cover the same contexts in the same order")
    before, after = point_estimates(base, seed), point_estimates(final, seed)
    metrics = {
        key: {
            "base": before[key].as_dict(),
            "final": after[key].as_dict(),
            "diff": paired_difference_ci(
                [r[key] for r in final], [r[key] for r in base], seed=seed
            ).as_dict(),
        }
        for key in METRIC_KEYS
    }
    return {
        "base_version": point_version(base)[0],
        "final_version": point_version(final)[0],
        "contexts": len(base),
        "samples": len(base[0]["samples"]) if base else 0,
        "metrics": metrics,
        "distinct2_pooled": {"base": pooled_distinct2(base), "final": pooled_distinct2(final)},
    }


def _cell(est: dict[str, float], fmt: str, sign: bool = False) -> str:
    spec = ("+" if sign else "") + fmt
    return f"{est['value']:{spec}} [{est['lo']:{spec}}, {est['hi']:{spec}}]"


def learning_table(report: dict[str, Any]) -> str:
    """The learning report as fixed-width text; a difference whose CI excludes 0 is marked '*'."""
    b, f = report["base_version"], report["final_version"]
    lines = [
        f"held-out learning report: {report['contexts']} contexts x {report['samples']} samples,"
        f" version {b} -> {f} (mean [95% bootstrap CI over contexts])",
        f"{'metric':<15}{f'base (v{b})':<28}{f'final (v{f})':<28}final - base",
    ]
    for key, (_, fmt) in METRIC_KEYS.items():
        m = report["metrics"][key]
        diff = m["diff"]
        mark = " *" if Estimate(**diff).excludes_zero() else ""
        lines.append(
            f"{key:<15}{_cell(m['base'], fmt):<28}{_cell(m['final'], fmt):<28}{_cell(diff, fmt, True)}{mark}"
        )
    pooled = report["distinct2_pooled"]
    lines.append(f"{'distinct2 (all answers pooled)':<43}{pooled['base']:.3f} -> {pooled['final']:.3f}")
    return "\n".join(lines)
