"""Confidence intervals by the percentile bootstrap: means, paired differences, correlations.

Pure Python plus numpy, seeded, so a report is reproducible. Every function returns an `Estimate`
(the statistic on the full sample and the 2.5th/97.5th percentiles of its bootstrap distribution, for
the default 95% level). Resampling is over the units given: pass one value per context (for example a
context's mean over its G samples) when samples of one context are not independent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap confidence interval; `n` is the number of resampled units."""

    value: float
    lo: float
    hi: float
    n: int

    def excludes_zero(self) -> bool:
        """True when the whole interval lies above 0 or below 0."""
        return self.lo > 0 or self.hi < 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _bootstrap(
    n: int, statistic: Callable[[np.ndarray], float], seed: int, level: float, resamples: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1.0 - tail))


def mean_ci(
    values: Sequence[float], seed: int = 0, level: float = 0.95, resamples: int = RESAMPLES
) -> Estimate:
    """Mean of `values` with its bootstrap CI. Raises ValueError on an empty sample. No interval (NaN
    bounds, which exclude nothing) for a single value, which has no spread to resample, or when a value
    is not finite: resampling only the draws that miss it would give a biased interval around a NaN."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if x.size == 1 or not np.isfinite(x).all():
        return Estimate(float(x.mean()), float("nan"), float("nan"), int(x.size))
    lo, hi = _bootstrap(x.size, lambda idx: float(x[idx].mean()), seed, level, resamples)
    return Estimate(float(x.mean()), lo, hi, int(x.size))


def paired_difference_ci(
    after: Sequence[float],
    before: Sequence[float],
    seed: int = 0,
    level: float = 0.95,
    resamples: int = RESAMPLES,
) -> Estimate:
    """Mean of `after[i] - before[i]` with its bootstrap CI (units resampled in pairs)."""
    if len(after) != len(before):
        raise ValueError(f"paired_difference_ci needs equal lengths, got {len(after)} and {len(before)}")
    return mean_ci(np.asarray(after, float) - np.asarray(before, float), seed, level, resamples)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def correlation_ci(
    x: Sequence[float],
    y: Sequence[float],
    method: str = "pearson",
    seed: int = 0,
    level: float = 0.95,
    resamples: int = RESAMPLES,
) -> Estimate:
    """Pearson or Spearman correlation of paired samples with its bootstrap CI (pairs resampled).

    A resample whose x or y is constant has no correlation and is left out of the interval.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size != b.size or a.size < 3:
        raise ValueError(f"correlation_ci needs two samples of equal length >= 3, got {a.size} and {b.size}")

    def stat(idx: np.ndarray) -> float:
        xa, yb = a[idx], b[idx]
        return _pearson(_ranks(xa), _ranks(yb)) if method == "spearman" else _pearson(xa, yb)

    lo, hi = _bootstrap(a.size, stat, seed, level, resamples)
    return Estimate(stat(np.arange(a.size)), lo, hi, int(a.size))
