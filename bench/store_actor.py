"""The replay store through its Ray actor, as rollout workers see it: groups/s when producer actors each
work on several ~2 KB groups at once and put each as it is done, and `sample` latency (16 records per
call) with 100k records held.

    .venv/bin/python bench/store_actor.py [--producers 4] [--in-flight 4] [--groups 1600] [--rounds 4]
        [--records 100000] [--samples 500] [--out FILE]

A real local Ray instance (not local mode). One store folder, filled to `--records` first; then the
store actor is started the way the launcher starts it (`jobs.launcher.remote`), once per setting and
round, and killed after it:
  - coalesced: synchronous=FULL (fsync per commit), `actors.store`'s default max_concurrency (group
               commit), and each producer's puts through `CoalescedPuts`, as the rollout worker sends
               them: puts that meet share one `put_many` call;
  - full:      the same store, but one `put_many` call per group (the rollout worker before
               `CoalescedPuts`);
  - normal:    synchronous=NORMAL, one call per group;
  - serial:    synchronous=FULL, max_concurrency 1: one call at a time, one commit (one fsync) per call;
  - ray_only:  an actor that stores nothing (`NullStore`), one call per group: the calls/s Ray itself
               allows here.
The settings alternate for `--rounds` rounds; each figure is over all its rounds, with the CPU each group
costs in the actor and in the producers (psutil) and the disk's fsync time beside it. Sample latency is
timed from this driver (the Ray round trip included), once with nothing else running and once while
the producers put (coalesced).

Goal (the benchmark issue's store row): >= 2000 groups/s through the actor with FULL and batched
(coalesced) puts, sample p99 <= 20 ms at 100k records. The last line printed is the JSON that
`bench/results.py --add FILE DATE` takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_store import group_record, percentile, print_figures  # noqa: E402  (bench/replay_store.py)

from actors.replay_store import ReplayStore  # noqa: E402
from actors.store_puts import CoalescedPuts  # noqa: E402
from esc.config import ActorsConfig, RolloutConfig  # noqa: E402
from jobs.launcher import remote  # noqa: E402

GOAL_GROUPS_PER_S = 2000.0
GOAL_SAMPLE_P99_MS = 20.0
SAMPLE_N = 16
FILL_BATCH = 500  # records per put_many call while filling the folder
TIMEOUT_S = 300.0
SETTINGS = {  # name -> (synchronous, max_concurrency, coalesced puts); synchronous None: NullStore
    "coalesced": ("FULL", ActorsConfig().store.max_concurrency, True),
    "full": ("FULL", ActorsConfig().store.max_concurrency, False),
    "normal": ("NORMAL", ActorsConfig().store.max_concurrency, False),
    "serial": ("FULL", 1, False),
    "ray_only": (None, ActorsConfig().store.max_concurrency, False),
}


class NullStore:
    """Answers `put_many` without storing anything: the calls/s that Ray alone allows on this machine."""

    def put_many(self, records: list[dict]) -> list[str]:
        return ["stored"] * len(records)

    def ready(self) -> int:
        return os.getpid()


class Producer:
    """Stands in for a rollout worker: `in_flight` groups at once, each put on its own, either through
    `CoalescedPuts` as the rollout worker does (puts that meet share calls) or one `put_many` call each."""

    async def put_groups(
        self, store, records: list[dict], in_flight: int, coalesced: bool
    ) -> tuple[float, float, list[str]]:
        """(wall-clock start, end, statuses) of putting every record."""
        todo = list(records)
        statuses: list[str] = []
        put = CoalescedPuts(store.put_many.remote).put if coalesced else store.put_many.remote

        async def lane() -> None:
            while todo:
                statuses.extend(await put([todo.pop()]))

        started = time.time()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        return started, time.time(), statuses

    def ready(self) -> int:
        return os.getpid()


def start_store(path: Path, setting: str) -> tuple[Any, psutil.Process]:
    """A store actor of `setting` on `path`, and its process."""
    synchronous, concurrency, _ = SETTINGS[setting]
    actor = ActorsConfig().store.model_copy(update={"max_concurrency": concurrency})
    if synchronous is None:
        store = remote(NullStore, actor).remote()
    else:
        store = remote(ReplayStore, actor).remote(str(path), 10_000_000, synchronous=synchronous)
    return store, psutil.Process(ray.get(store.ready.remote(), timeout=TIMEOUT_S))


def cpu_s(processes: list[psutil.Process]) -> float:
    """CPU seconds (user and system, every thread) the processes have used so far."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def start_producing(store, producers: list, share: int, in_flight: int, coalesced: bool) -> list:
    """Refs of every producer putting `share` new groups."""
    chunks = [ray.put([group_record(i, 0) for i in range(share)]) for _ in producers]
    return [p.put_groups.remote(store, chunk, in_flight, coalesced) for p, chunk in zip(producers, chunks)]


def put_groups(store, producers: list, share: int, in_flight: int, coalesced: bool, tag: str) -> float:
    """Seconds from the first producer's start to the last one's end."""
    answers = ray.get(start_producing(store, producers, share, in_flight, coalesced), timeout=TIMEOUT_S)
    statuses = [s for _, _, got in answers for s in got]
    assert statuses == ["stored"] * share * len(producers), f"{tag}: not every group was stored"
    return max(end for _, end, _ in answers) - min(start for start, _, _ in answers)


def fsync_ms(folder: Path, count: int = 200) -> float:
    """Median milliseconds of appending 4 KB to a file in `folder` and fsyncing it: what one FULL commit
    waits for on this disk (it varies with what else the machine writes)."""
    path = folder / "fsync-probe"
    times = []
    with open(path, "wb") as file:
        for _ in range(count):
            t0 = time.perf_counter()
            file.write(b"x" * 4096)
            file.flush()
            os.fsync(file.fileno())
            times.append((time.perf_counter() - t0) * 1000)
    path.unlink()
    return statistics.median(times)


def sample_latencies(store, calls: int, until: list | None = None) -> list[float]:
    """Milliseconds of `calls` `sample(16)` calls through the actor, one after another; with `until`
    (object refs), of fewer should those all be ready first."""
    latencies: list[float] = []
    while len(latencies) < calls:
        if until and not ray.wait(until, num_returns=len(until), timeout=0)[1]:
            break
        t0 = time.perf_counter()
        got = ray.get(store.sample.remote(SAMPLE_N, 0, 0, "bench"), timeout=TIMEOUT_S)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert len(got) == SAMPLE_N, "the store ran out of fresh records to sample"
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4, help="Producer actors (rollout workers).")
    parser.add_argument(
        "--in-flight", type=int, default=RolloutConfig().in_flight, help="Groups each producer has open."
    )
    parser.add_argument("--groups", type=int, default=1600, help="Groups put per setting and round.")
    parser.add_argument("--rounds", type=int, default=4, help="Rounds of the four settings, alternating.")
    parser.add_argument("--records", type=int, default=100_000, help="Records held when sampling.")
    parser.add_argument(
        "--samples", type=int, default=500, help="Timed sample calls with nothing else running."
    )
    parser.add_argument("--out", type=Path, help="Also write the JSON line here.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="store-actor-bench-"))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        producers = [ray.remote(num_cpus=0)(Producer).remote() for _ in range(args.producers)]
        pids = ray.get([p.ready.remote() for p in producers], timeout=TIMEOUT_S)
        producer_processes = [psutil.Process(pid) for pid in pids]

        store, _ = start_store(root, "full")
        t0 = time.perf_counter()
        for start in range(0, args.records, FILL_BATCH):
            batch = [group_record(i, 0) for i in range(start, min(start + FILL_BATCH, args.records))]
            assert ray.get(store.put_many.remote(batch), timeout=TIMEOUT_S) == ["stored"] * len(batch)
        fill_per_s = args.records / (time.perf_counter() - t0)
        held = ray.get(store.stats.remote(), timeout=TIMEOUT_S)["total"]
        quiet = sample_latencies(store, args.samples)
        ray.kill(store)

        fsync_before = fsync_ms(root)
        share = args.groups // args.producers  # groups per producer and round
        seconds = dict.fromkeys(SETTINGS, 0.0)
        calls, commits, actor_cpu, producer_cpu = Counter(), Counter(), Counter(), Counter()
        for r in range(args.rounds):
            for name, (synchronous, _, coalesced) in SETTINGS.items():
                store, process = start_store(root, name)
                before = cpu_s([process]), cpu_s(producer_processes)
                tag = f"{name} round {r}"
                seconds[name] += put_groups(store, producers, share, args.in_flight, coalesced, tag)
                actor_cpu[name] += cpu_s([process]) - before[0]
                producer_cpu[name] += cpu_s(producer_processes) - before[1]
                if synchronous is not None:  # a fresh actor: its puts are this round's
                    stats = ray.get(store.stats.remote(), timeout=TIMEOUT_S)
                    calls[name] += stats["put_calls"]
                    commits[name] += stats["put_commits"]
                ray.kill(store)
        fsync = (fsync_before + fsync_ms(root)) / 2
        per_commit = {name: round(calls[name] / commits[name], 2) for name in commits}
        groups = args.rounds * share * args.producers
        per_call = round(groups / calls["coalesced"], 2)
        cpu_ms = {  # per group
            name: {
                "actor": round(actor_cpu[name] / groups * 1000, 3),
                "producers": round(producer_cpu[name] / groups * 1000, 3),
            }
            for name in SETTINGS
        }
        per_s = {name: groups / s for name, s in seconds.items()}

        store, _ = start_store(root, "full")
        busy_refs = start_producing(store, producers, share, args.in_flight, True)
        busy = sample_latencies(store, args.samples, until=busy_refs)
        ray.get(busy_refs, timeout=TIMEOUT_S)
        ray.kill(store)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    p50, p99 = percentile(quiet, 50), percentile(quiet, 99)
    busy_p50, busy_p99 = percentile(busy, 50), percentile(busy, 99)
    concurrent = args.producers * args.in_flight
    met = {
        "groups_per_s": per_s["coalesced"] >= GOAL_GROUPS_PER_S,
        "sample_p99_ms": p99 <= GOAL_SAMPLE_P99_MS,
    }
    rows = [
        (f"fill, put_many x{FILL_BATCH} through the actor (FULL)", f"{fill_per_s:,.0f}", "records/s"),
        (f"groups/s, FULL, puts coalesced ({concurrent} open)", f"{per_s['coalesced']:,.0f}", "groups/s"),
        ("  groups per put_many call", f"{per_call}", "groups"),
        ("  put_many calls per commit", f"{per_commit['coalesced']}", "calls"),
        (f"groups/s, FULL, a call per group ({concurrent} calls open)", f"{per_s['full']:,.0f}", "groups/s"),
        ("  put_many calls per commit", f"{per_commit['full']}", "calls"),
        ("groups/s, NORMAL, group commit", f"{per_s['normal']:,.0f}", "groups/s"),
        ("  put_many calls per commit", f"{per_commit['normal']}", "calls"),
        ("groups/s, FULL, max_concurrency 1 (a commit per call)", f"{per_s['serial']:,.0f}", "groups/s"),
        ("calls/s, NullStore (Ray alone, nothing stored)", f"{per_s['ray_only']:,.0f}", "calls/s"),
        ("fsync of 4 KB on this disk, median (before and after)", f"{fsync:.2f}", "ms"),
        *(
            (f"CPU per group, {name}: actor / producers", f"{c['actor']:.2f} / {c['producers']:.2f}", "ms")
            for name, c in cpu_ms.items()
        ),
        (f"sample({SAMPLE_N}) p50 at {held:,} records, quiet", f"{p50:.2f}", "ms"),
        (f"sample({SAMPLE_N}) p99 at {held:,} records, quiet", f"{p99:.2f}", "ms"),
        (f"sample({SAMPLE_N}) p50 while producers put (coalesced)", f"{busy_p50:.2f}", "ms"),
        (f"sample({SAMPLE_N}) p99 while producers put (coalesced)", f"{busy_p99:.2f}", "ms"),
    ]
    goal = f"goal >= {GOAL_GROUPS_PER_S:.0f} groups/s with FULL and sample p99 <= {GOAL_SAMPLE_P99_MS:.0f} ms"
    print_figures(rows, goal, met)
    result = {
        "name": "store_actor",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "producers": args.producers,
        "in_flight": args.in_flight,
        "groups_per_round": share * args.producers,
        "rounds": args.rounds,
        "records_held": held,
        "fill_records_per_s": round(fill_per_s, 1),
        "groups_per_s": {name: round(v, 1) for name, v in per_s.items()},
        "groups_per_call_coalesced": per_call,
        "calls_per_commit": per_commit,
        "fsync_ms": round(fsync, 3),
        "cpu_ms_per_group": cpu_ms,
        "sample_n": SAMPLE_N,
        "sample_p50_ms": round(p50, 3),
        "sample_p99_ms": round(p99, 3),
        "sample_busy_p50_ms": round(busy_p50, 3),
        "sample_busy_p99_ms": round(busy_p99, 3),
        "sample_busy_calls": len(busy),
        "goals": {"groups_per_s": GOAL_GROUPS_PER_S, "sample_p99_ms": GOAL_SAMPLE_P99_MS},
        "goals_met": met,
    }
    line = json.dumps(result)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
