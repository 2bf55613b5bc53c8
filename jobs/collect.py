"""`rlff collect`: the paper's phase 1 as a Ray job. N contexts from a dataset split, G candidate
replies each, future-oriented rewards for them, streamed into the durable replay store.

Re-running the same command continues where it stopped: groups already in the store are skipped.
"""

from __future__ import annotations

import json
import sys
import time

import ray
from tqdm import tqdm

from esc.config import RunConfig
from esc.contexts import dialogue_context
from esc.data import load_dialogues
from jobs import UsageError
from jobs.launcher import init_ray, report_restarts, start_actors

WATCH_EVERY_S = 3.0  # how often the driver checks actors for deaths and restarts while it waits
PROBE_TIMEOUT_S = 10.0


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
    elapsed = max(w["elapsed_s"] for w in workers)
    if elapsed > 0:
        metrics["tokens_per_s"] = sum(w["completion_tokens"] for w in workers) / elapsed
    system.hub.record.remote("driver", metrics)
    return finished


def run_collect(config: RunConfig, data_spec: str | None, limit: int) -> int:
    if limit <= 0:
        raise UsageError("--limit must be a positive number of contexts")
    # Phase 1 labels every candidate; rollout.future_fraction is for the online loop only.
    config = config.model_copy(update={"rollout": config.rollout.model_copy(update={"future_fraction": 1.0})})
    spec = data_spec or config.data.scenarios
    contexts = [dialogue_context(d, config.seed) for d in load_dialogues(spec, seed=config.seed)[:limit]]
    config.write_resolved()
    init_ray()
    started = time.perf_counter()
    system = start_actors(config)
    print(f"actors ready in {time.perf_counter() - started:.1f} s; store {config.store_dir()}", flush=True)
    pids = system.pids()
    print("actor pids: " + json.dumps(pids), flush=True)
    workers = system.workers
    chunks = [contexts[i :: len(workers)] for i in range(len(workers))]
    pending = {
        w.collect.remote([c.model_dump() for c in chunk]): len(chunk) for w, chunk in zip(workers, chunks)
    }
    totals = {"stored": 0, "duplicate": 0, "skipped": 0, "stopped": 0}
    work_started = time.perf_counter()
    restarts = 0
    with tqdm(total=len(contexts), desc="contexts") as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WATCH_EVERY_S)
            if not done:
                now = system.pids(pids)
                lines, restarted = report_restarts(pids, now)
                for line in lines:
                    tqdm.write(line, file=sys.stderr)
                restarts += restarted
                pids = now
                finished = driver_metrics(system, len(contexts), restarts, now)
                if finished is not None:
                    bar.update(max(0, min(finished, bar.total) - bar.n))
            for ref in done:
                for key, value in ray.get(ref, timeout=60).items():
                    totals[key] += value
                pending.pop(ref)
        bar.update(bar.total - bar.n)
    seconds = time.perf_counter() - work_started
    driver_metrics(system, len(contexts), restarts, pids)
    stats = ray.get([w.stats.remote() for w in workers], timeout=60)
    store = ray.get(system.store.stats.remote(), timeout=60)
    tokens = sum(s["completion_tokens"] for s in stats)
    labels: dict[int, int] = {}
    for s in stats:
        for label, count in s["labels"].items():
            labels[int(label)] = labels.get(int(label), 0) + count
    print(
        f"groups: {totals['stored']} stored, {totals['skipped']} already there,"
        f" {totals['duplicate']} duplicate"
    )
    print(f"store: {store['total']} records ({store['unconsumed']} unconsumed) at {config.store_dir()}")
    edges = config.future.class_edges
    print(
        "future-reward classes (edges "
        + ", ".join(map(str, edges))
        + "): "
        + ", ".join(f"class {k}: {labels[k]}" for k in sorted(labels))
        if labels
        else "no future rewards"
    )
    print(f"took {seconds:.1f} s; counselor {tokens / seconds if seconds else 0:.1f} tokens/s")
    print(f"metrics: {config.run_dir() / 'metrics.jsonl'}")
    ray.get([system.store.close.remote(), system.hub.close.remote()], timeout=60)
    return 0
