"""`rlff collect`: the paper's phase 1 as a Ray job. N contexts from a dataset split, G candidate
replies each, future-oriented rewards for them, streamed into the durable replay store.

Re-running the same command continues where it stopped: groups already in the store are skipped.
Nothing consumes records during a collection, so one the store has no room for is refused before it
starts (its workers would otherwise wait for room for ever).
"""

from __future__ import annotations

import json
import sys
import time

from tqdm import tqdm

from actors.rollout_worker import group_id
from esc.config import RunConfig
from esc.contexts import dialogue_context
from esc.data import load_dialogues
from esc.schemas import Context
from jobs import UsageError
from jobs.driver import Watch, get
from jobs.launcher import init_ray, start_actors


def run_collect(config: RunConfig, data_spec: str | None, limit: int) -> int:
    if limit <= 0:
        raise UsageError("--limit must be a positive number of contexts")
    if config.rollout.future_fraction < 1.0:  # phase 1 labels every candidate; the fraction is for `rlff run`
        print(
            f"collect: every candidate gets a simulated future (rollout.future_fraction"
            f" {config.rollout.future_fraction} applies to rlff run only)",
            flush=True,
        )
        config = config.replace("rollout", future_fraction=1.0)
    spec = data_spec or config.data.scenarios
    contexts = [dialogue_context(d, config.seed) for d in load_dialogues(spec, seed=config.seed)[:limit]]
    if not contexts:
        raise UsageError(f"{spec!r} holds no dialogues to collect from")
    config.write_resolved()
    init_ray()
    started = time.perf_counter()
    system = start_actors(config)
    print(f"actors ready in {time.perf_counter() - started:.1f} s; store {config.store_dir()}", flush=True)
    check_room(config, system, contexts)
    watch = Watch(system, len(contexts), say=lambda line: tqdm.write(line, file=sys.stderr))
    print("actor pids: " + json.dumps(watch.pids), flush=True)  # the first probe, taken by the watch
    seconds = _collect(system, contexts, watch)
    stats = get([w.stats.remote() for w in system.workers])
    store = get(system.store.stats.remote())
    tokens = sum(s["completion_tokens"] for s in stats)
    labels: dict[int, int] = {}
    for s in stats:
        for label, count in s["labels"].items():
            labels[int(label)] = labels.get(int(label), 0) + count
    print(
        f"groups: {watch.totals['stored']} stored, {watch.totals['skipped']} already there,"
        f" {watch.totals['duplicate']} duplicate"
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
    get([system.store.close.remote(), system.hub.close.remote()])
    return 0


def check_room(config: RunConfig, system, contexts: list[Context]) -> None:
    """Raise UsageError when the store cannot take the records the contexts not yet in it will write
    (a group each, and its simulated record with `reward_refresh.every`)."""
    version = get(system.counselor[0].weights_version.remote())
    held = get(system.store.ids.remote())
    new = sum(group_id(config.name, c.id, version) not in held for c in contexts)
    records = new * (2 if config.reward_refresh.every else 1)
    unconsumed, capacity = get(system.store.stats.remote())["unconsumed"], config.store.capacity
    if records > capacity - unconsumed:
        raise UsageError(
            f"collecting {new} new contexts writes up to {records} records, but the store holds"
            f" {unconsumed} unconsumed of its capacity {capacity} and nothing consumes during a"
            " collection; raise store.capacity or lower --limit"
        )


def _collect(system, contexts: list[Context], watch: Watch) -> float:
    """Split `contexts` over the workers, wait for them with a progress bar; returns the seconds taken
    (outcome counts in `watch.totals`)."""
    workers, started = system.workers, time.perf_counter()
    chunks = [contexts[i :: len(workers)] for i in range(len(workers))]
    pending = {w.collect.remote([c.model_dump() for c in chunk]) for w, chunk in zip(workers, chunks)}
    with tqdm(total=len(contexts), desc="contexts") as bar:
        while pending:
            for ref in watch.wait(list(pending)):
                watch.count(ref)
                pending.remove(ref)
            if watch.finished is not None:
                bar.update(max(0, min(watch.finished, bar.total) - bar.n))
        bar.update(bar.total - bar.n)
    seconds = time.perf_counter() - started
    watch.probe()  # the driver's last view of the run, for the metrics
    return seconds
