"""Replay store throughput: durable puts/s (single puts and put_many batches of 100) and `sample`
latency (16 records per call) with 100k records held, on realistic ~2 KB candidate-group records.

    .venv/bin/python bench/replay_store.py [--path DIR] [--records 100000] [--single 3000]

Goals (issues 4 and 8): >= 5000 durable puts/s, sample p99 <= 50 ms at 100k records. "Durable" is
the store's default, synchronous=NORMAL in WAL mode: every put is committed and survives a process
crash; the fsync-per-commit figure (synchronous=FULL, power-loss safe) is printed alongside. Everything
here is in-process; `bench/store_actor.py` measures the store through its Ray actor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgpack

from actors.replay_store import ReplayStore

GOAL_PUTS_PER_S = 5000.0
GOAL_SAMPLE_P99_MS = 50.0
SAMPLE_N = 16


def group_record(i: int, version: int) -> dict:
    """A candidate-group record as a rollout worker writes it: scenario, a context of six turns and four
    candidates with reasoning, answer, reward and reward class (about 2 KB of msgpack)."""
    turn = "I have been feeling really anxious about my new job and I cannot sleep at night, it keeps me up. "
    return {
        "id": f"group-{uuid.uuid4().hex}",
        "kind": "group",
        "policy_version": version,
        "created_at": time.time(),
        "scenario": {
            "id": f"builtin-{i % 40:02d}",
            "emotion_type": "anxiety",
            "problem_type": "job crisis",
            "situation": "I started a new job and I worry every day that I will be fired.",
            "initial_intensity": 4,
        },
        "context": [
            {"role": "seeker" if t % 2 == 0 else "counselor", "text": turn[: 90 + t]} for t in range(6)
        ],
        "candidates": [
            {
                "reasoning": "The seeker is anxious and sleep-deprived; validate first, then explore. " * 2,
                "answer": "That sounds exhausting. What part of the new job worries you the most right now?",
                "reward": 0.25 * c - 0.5,
                "reward_class": c % 3,
                "policy_version": version,
            }
            for c in range(4)
        ],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def print_figures(rows: list[tuple[str, str, str]], goal: str, met: dict[str, bool]) -> None:
    """Rows of (what, value, unit) as an aligned table, then the goal and whether each part was met."""
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10}  {unit}")
    print(f"{goal}:")
    for name, ok in met.items():
        print(f"  {name}: {'met' if ok else 'NOT met'}")


def time_single_puts(path: Path, count: int, synchronous: str) -> float:
    store = ReplayStore(path, capacity=10_000_000, synchronous=synchronous)
    records = [group_record(i, 0) for i in range(count)]
    started = time.perf_counter()
    statuses = [store.put(r) for r in records]
    elapsed = time.perf_counter() - started
    assert statuses == ["stored"] * count, "single puts were not all stored"
    store.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="Store folder (default: a fresh temporary folder).")
    parser.add_argument("--records", type=int, default=100_000, help="Records held when sampling.")
    parser.add_argument("--single", type=int, default=3000, help="Records put one at a time.")
    parser.add_argument("--single-full", type=int, default=500, help="Single puts with synchronous=FULL.")
    parser.add_argument("--samples", type=int, default=500, help="Timed sample calls of 16 records.")
    args = parser.parse_args()
    root = Path(args.path) if args.path else Path(tempfile.mkdtemp(prefix="replay-bench-"))
    for sub in ("single", "full", "main"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    try:
        record_bytes = len(msgpack.packb(group_record(0, 0), use_bin_type=True))
        single = time_single_puts(root / "single", args.single, "NORMAL")
        single_full = time_single_puts(root / "full", args.single_full, "FULL")

        store = ReplayStore(root / "main", capacity=args.records)
        batches = 0.0
        for start in range(0, args.records, 100):
            # Versions 0..9 in order, so every record is fresh for current_version=9, max_staleness=9.
            batch = [
                group_record(i, i * 10 // args.records) for i in range(start, min(start + 100, args.records))
            ]
            t0 = time.perf_counter()
            statuses = store.put_many(batch)
            batches += time.perf_counter() - t0
            assert statuses == ["stored"] * len(batch), "batched puts were not all stored"
        batched = args.records / batches
        held = len(store)
        assert store.put(group_record(0, 9)) == "full", "a full store accepted a record"

        latencies = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            got = store.sample(SAMPLE_N, current_version=9, max_staleness=9, consumer="bench")
            latencies.append((time.perf_counter() - t0) * 1000)
            assert len(got) == SAMPLE_N
        stats = store.stats()
        wal_bytes = (root / "main" / "store.sqlite-wal").stat().st_size
        store.close()
    finally:
        if not args.path:
            shutil.rmtree(root, ignore_errors=True)

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    met = {
        "single_puts_per_s": single >= GOAL_PUTS_PER_S,
        "batched_puts_per_s": batched >= GOAL_PUTS_PER_S,
        "sample_p99_ms": p99 <= GOAL_SAMPLE_P99_MS,
    }
    rows = [
        ("record size (msgpack)", f"{record_bytes}", "bytes"),
        ("single puts, synchronous=NORMAL", f"{single:,.0f}", "puts/s"),
        ("put_many x100, synchronous=NORMAL", f"{batched:,.0f}", "puts/s"),
        ("single puts, synchronous=FULL (fsync)", f"{single_full:,.0f}", "puts/s"),
        (f"sample({SAMPLE_N}) p50 at {held:,} records", f"{p50:.2f}", "ms"),
        (f"sample({SAMPLE_N}) p99 at {held:,} records", f"{p99:.2f}", "ms"),
        ("store size on disk (db + WAL)", f"{stats['db_bytes'] / 2**20:.1f}", "MiB"),
        ("  of which WAL (checkpointed, reused)", f"{wal_bytes / 2**20:.1f}", "MiB"),
    ]
    goal = f"goal >= {GOAL_PUTS_PER_S:.0f} puts/s and sample p99 <= {GOAL_SAMPLE_P99_MS:.0f} ms"
    print_figures(rows, goal, met)
    result = {
        "name": "replay_store",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "records_held": held,
        "record_bytes": record_bytes,
        "single_puts_per_s": round(single, 1),
        "batched_puts_per_s": round(batched, 1),
        "single_puts_per_s_fsync": round(single_full, 1),
        "sample_n": SAMPLE_N,
        "sample_p50_ms": round(p50, 3),
        "sample_p99_ms": round(p99, 3),
        "sample_mean_ms": round(statistics.fmean(latencies), 3),
        "db_bytes": stats["db_bytes"],
        "wal_bytes": wal_bytes,
        "units": {"puts": "records/s", "latency": "ms", "size": "bytes"},
        "goals": {"puts_per_s": GOAL_PUTS_PER_S, "sample_p99_ms": GOAL_SAMPLE_P99_MS},
        "goals_met": met,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
