"""The driver's side of a running actor system, shared by `rlff collect` and `rlff run`.

Both hand work to rollout workers and wait for it with `Watch.wait`: it returns the finished calls, and
every `WATCH_EVERY_S` without one it probes the actors (who died, who came back, under which process
id), prints a line per restart, and records the driver's view of the run (store size, queue depth,
tokens/s per role) as metrics source 'driver'. `Watch.count` adds a finished `collect` call's outcome
counts to the run's totals; `Watch.settle` does the same but returns a failed call's error in one line
(and counts it as `failed`) instead of raising, for `rlff run` to stop gracefully on it. Every other
call the driver makes waits at most `CALL_TIMEOUT_S` (`get`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import ray

from jobs.launcher import report_restarts

WATCH_EVERY_S = 3.0  # how often the driver checks actors for deaths and restarts while it waits
PROBE_TIMEOUT_S = 10.0  # a probe of an actor that is restarting gives up after this, until the next
CALL_TIMEOUT_S = 60.0  # any other call from the driver to an actor


def get(refs: Any) -> Any:
    """`ray.get` with the driver's timeout."""
    return ray.get(refs, timeout=CALL_TIMEOUT_S)


def error_line(error: ray.exceptions.RayError) -> str:
    """A failed call in one line: the actor's own exception (what a RayTaskError wraps) and the first
    line of its message."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Watch:
    """Waits on work handed to rollout workers; `total` is how many contexts the run asked for (0 when
    it cycles until stopped); `say` prints a line about an actor restart."""

    def __init__(self, system, total: int = 0, say: Callable[[str], None] = _say):
        self.system, self.total, self.say = system, total, say
        self.pids, self.restarts = system.pids(), 0
        self.totals = {"stored": 0, "duplicate": 0, "skipped": 0, "stopped": 0}
        self.finished: int | None = None  # contexts the workers report done, as of the latest probe

    def wait(self, refs: list) -> list:
        """The refs of `refs` that finished within WATCH_EVERY_S (at most one); probes when none did."""
        done, _ = ray.wait(refs, num_returns=1, timeout=WATCH_EVERY_S) if refs else ([], [])
        if not done:
            self.probe()
        return done

    def count(self, ref) -> None:
        """Add the outcome counts of a finished `RolloutWorker.collect` call."""
        for key, value in get(ref).items():
            self.totals[key] += value

    def settle(self, ref) -> str | None:
        """`count` a finished call; when it failed (the worker raised: a backend that gave up, a bug; or
        died for good), count it as `failed` and return its error in one line instead of raising."""
        try:
            self.count(ref)
        except ray.exceptions.RayError as error:
            self.totals["failed"] = self.totals.get("failed", 0) + 1
            return error_line(error)
        return None

    def probe(self) -> None:
        now = self.system.pids(self.pids)
        lines, restarted = report_restarts(self.pids, now)
        for line in lines:
            self.say(line)
        self.restarts, self.pids = self.restarts + restarted, now
        finished = driver_metrics(self.system, self.total, self.restarts, now)
        if finished is not None:
            self.finished = finished


def _numbered(role: str, handles: list) -> list[tuple[str, object]]:
    return [(f"{role}-{i}", h) for i, h in enumerate(handles)]


def driver_metrics(system, total: int, restarts: int, pids: dict[str, int | None]) -> int | None:
    """Record the driver's view of the run (`pids`: the latest `system.pids()` probe) and return how
    many contexts the workers have finished; None when an actor is restarting and did not answer in
    time (the next probe will)."""
    try:
        store = ray.get(system.store.stats.remote(), timeout=PROBE_TIMEOUT_S)
        workers = ray.get([w.stats.remote() for w in system.workers], timeout=PROBE_TIMEOUT_S)
        roles = {name: h for name, hs in system.roles().items() for name, h in _numbered(name, hs)}
        rates = ray.get([h.throughput.remote() for h in roles.values()], timeout=PROBE_TIMEOUT_S)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
        return None
    finished = sum(w["done"] for w in workers)
    metrics = {
        "store_size": store["total"],
        "store_unconsumed": store["unconsumed"],
        "queue_depth": max(0, total - finished),
        "actor_restarts": restarts,
        "actors_down": sum(pid is None for pid in pids.values()),
    }
    metrics["role_tokens_per_s"] = {
        name: round(r["tokens"] / r["elapsed_s"], 2) for name, r in zip(roles, rates) if r["elapsed_s"] > 0
    }
    metrics["role_tokens"] = {name: int(r["tokens"]) for name, r in zip(roles, rates)}
    elapsed = max(w["elapsed_s"] for w in workers)
    if elapsed > 0:
        metrics["tokens_per_s"] = sum(w["completion_tokens"] for w in workers) / elapsed
    system.hub.record.remote("driver", metrics)
    return finished
